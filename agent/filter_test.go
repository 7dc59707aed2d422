package agent

import (
	"net/http"
	"testing"

	pb "github.com/tether-dev/tether/rpc/manager"
)

// TestPick: the table's choice for a request, with the manager's filter
// semantics (manager/conflict): anchored regexes against the values joined
// with ", ", an absent header failing; "host" is the request's Host.
func TestPick(t *testing.T) {
	a := &Agent{cfg: Config{Port: testPort}}
	a.life = t.Context()
	a.log = discardLogger()
	table := func(infos ...*pb.InterceptInfo) *routes {
		a.routes.Store(nil)
		a.setRoutes(infos)
		return a.routes.Load()
	}
	alice := httpIntercept("x", map[string]string{"x-user": "alice"}, "/api/.*")
	for _, tc := range []struct {
		name   string
		rt     *routes
		host   string
		path   string
		header http.Header
		want   string
	}{
		{"no table", nil, "a", "/api/1", http.Header{"X-User": {"alice"}}, ""},
		{"match", table(alice), "a", "/api/1", http.Header{"X-User": {"alice"}}, "x"},
		{"anchored value", table(alice), "a", "/api/1", http.Header{"X-User": {"alicex"}}, ""},
		{"anchored path", table(alice), "a", "/x/api/1", http.Header{"X-User": {"alice"}}, ""},
		{"absent header", table(alice), "a", "/api/1", nil, ""},
		{"joined values", table(alice), "a", "/api/1", http.Header{"X-User": {"alice", "bob"}}, ""},
		{"host", table(httpIntercept("h", map[string]string{"host": `web\.example`}, "")), "web.example", "/", nil, "h"},
		{"empty filter takes all", table(httpIntercept("e", nil, "")), "a", "/", nil, "e"},
		{"first match wins", table(httpIntercept("e", nil, ""), alice), "a", "/api/1", http.Header{"X-User": {"alice"}}, "e"},
		{"invalid filter takes none", table(httpIntercept("bad", map[string]string{"x-user": "("}, "")), "a", "/", http.Header{"X-User": {"("}}, ""},
		{"global takes all", table(alice, wholeIntercept("g", pb.InterceptKind_GLOBAL, testPort)), "a", "/", nil, "g"},
		{"other port ignored", table(wholeIntercept("g", pb.InterceptKind_GLOBAL, 1), httpIntercept("o", nil, "")), "a", "/", nil, "o"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "http://"+tc.host+tc.path, nil)
			if tc.header != nil {
				r.Header = tc.header
			}
			got, why := tc.rt.pick(r, a.now())
			id := ""
			if got != nil {
				id = got.id
			}
			if id != tc.want {
				t.Errorf("pick = %q (%s), want %q", id, why, tc.want)
			}
		})
	}
}

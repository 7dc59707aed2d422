package conflict

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const wl = "default/echo"

func mustFilter(t testing.TB, headers []string, path string) Filter {
	t.Helper()
	f, err := NewFilter(headers, path)
	if err != nil {
		t.Fatalf("NewFilter(%q, %q): %v", headers, path, err)
	}
	return f
}

// hdr is an HTTP intercept on wl:8080 with header conditions.
func hdr(t testing.TB, headers ...string) Intercept {
	return Intercept{Workload: wl, Port: 8080, Kind: HTTP, Filter: mustFilter(t, headers, "")}
}

// pth is an HTTP intercept on wl:8080 with a path condition.
func pth(t testing.TB, path string, headers ...string) Intercept {
	return Intercept{Workload: wl, Port: 8080, Kind: HTTP, Filter: mustFilter(t, headers, path)}
}

func global(port uint16) Intercept { return Intercept{Workload: wl, Port: port, Kind: Global} }

// takes reports whether intercept i would take the request ex.
func takes(i Intercept, ex *Example) bool {
	if i.kind() != HTTP {
		return true
	}
	return i.Filter.Matches(ex.Header, ex.Path)
}

// checkConflict runs Conflict both ways and checks the properties every
// answer must have: symmetry of the bit, and an example taken by both.
func checkConflict(t *testing.T, a, b Intercept) (bool, *Example, string) {
	t.Helper()
	got, ex, why := Conflict(a, b)
	rgot, rex, rwhy := Conflict(b, a)
	if got != rgot {
		t.Fatalf("asymmetric: Conflict(a, b) = %v (%s), Conflict(b, a) = %v (%s)", got, why, rgot, rwhy)
	}
	if why == "" || rwhy == "" {
		t.Errorf("empty explanation")
	}
	for _, e := range []*Example{ex, rex} {
		if e == nil {
			continue
		}
		if !got {
			t.Errorf("example %v without a conflict", e)
		}
		if !takes(a, e) || !takes(b, e) {
			t.Errorf("example %v is not taken by both intercepts (a: %v, b: %v)", e, takes(a, e), takes(b, e))
		}
	}
	return got, ex, why
}

func TestConflict(t *testing.T) {
	other := func(i Intercept) Intercept { i.Workload = "default/other"; return i }
	port := func(i Intercept, p uint16) Intercept { i.Port = p; return i }
	replace := Intercept{Workload: wl, Kind: Replace}

	tests := []struct {
		name    string
		a, b    Intercept
		want    bool
		headers map[string]string // expected example headers; nil: don't check
		path    string            // expected example path; "": don't check
		nilEx   bool              // expect no example
		why     string            // substring of the explanation
	}{
		{name: "global vs global", a: global(8080), b: global(8080), want: true, nilEx: true, why: "both intercepts are global"},
		{name: "global vs global other port", a: global(8080), b: global(9090), want: false, why: "different ports"},
		{name: "global vs HTTP", a: global(8080), b: hdr(t, "x-user=al.*"), want: true,
			headers: map[string]string{"x-user": "al"}, path: "/", why: "global intercept"},
		{name: "HTTP without conditions is global", a: Intercept{Workload: wl, Port: 8080, Kind: HTTP}, b: hdr(t, "x-user=a"),
			want: true, why: "global intercept"},
		{name: "two empty HTTP filters", a: Intercept{Workload: wl, Port: 8080, Kind: HTTP}, b: Intercept{Workload: wl, Port: 8080, Kind: HTTP},
			want: true, nilEx: true, why: "both intercepts are global"},
		{name: "replace vs global same port", a: replace, b: global(8080), want: true, nilEx: true, why: "replace"},
		{name: "replace vs HTTP same port", a: Intercept{Workload: wl, Port: 8080, Kind: Replace}, b: hdr(t, "x-user=alice"),
			want: true, headers: map[string]string{"x-user": "alice"}, why: "replace"},
		{name: "replace vs HTTP other port", a: replace, b: port(hdr(t, "x-user=alice"), 9090), want: true,
			headers: map[string]string{"x-user": "alice"}, why: "port 9090 included"},
		{name: "replace vs global other port", a: replace, b: global(9090), want: true, nilEx: true},
		{name: "replace vs replace", a: replace, b: replace, want: true, nilEx: true},
		{name: "replace other workload", a: replace, b: other(global(8080)), want: false, why: "different workloads"},
		{name: "unknown kind treated as replace", a: Intercept{Workload: wl, Kind: 42}, b: global(9090), want: true},
		{name: "different workloads", a: global(8080), b: other(global(8080)), want: false, why: "different workloads"},
		{name: "different workloads same filter", a: hdr(t, "x-user=alice"), b: other(hdr(t, "x-user=alice")), want: false},
		{name: "HTTP other port", a: hdr(t, "x-user=alice"), b: port(hdr(t, "x-user=alice"), 9090), want: false, why: "different ports"},
		{name: "same header literal", a: hdr(t, "x-user=alice"), b: hdr(t, "x-user=alice"), want: true,
			headers: map[string]string{"x-user": "alice"}, why: `header x-user: both match "alice"`},
		{name: "disjoint by header", a: hdr(t, "x-user=alice"), b: hdr(t, "x-user=bob"), want: false,
			why: "header x-user: regexes `alice` and `bob` never match the same value"},
		{name: "overlapping regexes", a: hdr(t, "x-user=al.*"), b: hdr(t, "x-user=.*ice"), want: true,
			headers: map[string]string{"x-user": "alice"}},
		{name: "anchored: prefix is not a match", a: hdr(t, "x-user=ali"), b: hdr(t, "x-user=alice"), want: false},
		{name: "anchored: prefix regex", a: hdr(t, "x-user=ali.*"), b: hdr(t, "x-user=alice"), want: true,
			headers: map[string]string{"x-user": "alice"}},
		{name: "anchored: suffix is not a match", a: hdr(t, "x-user=lice"), b: hdr(t, "x-user=a.*"), want: false},
		{name: "anchored: explicit anchors", a: hdr(t, "x-user=^al.*$"), b: hdr(t, "x-user=.*ce"), want: true,
			headers: map[string]string{"x-user": "alce"}},
		{name: "anchor in the middle", a: hdr(t, "x-user=a^b|c"), b: hdr(t, "x-user=ab|c"), want: true,
			headers: map[string]string{"x-user": "c"}},
		{name: "header names case-insensitive", a: hdr(t, "X-User=alice"), b: hdr(t, "x-user=bob"), want: false},
		{name: "header names case-insensitive conflict", a: hdr(t, "X-USER=alice"), b: hdr(t, "x-user=alice"), want: true,
			headers: map[string]string{"x-user": "alice"}},
		{name: "(?i) regex", a: hdr(t, "x-user=(?i)ALICE"), b: hdr(t, "x-user=alice"), want: true,
			headers: map[string]string{"x-user": "alice"}},
		{name: "(?i) both sides", a: hdr(t, "x-user=(?i)al.ce"), b: hdr(t, "x-user=(?i)ALI[C]E"), want: true,
			headers: map[string]string{"x-user": "alice"}},
		{name: "(?i) inside a group only", a: hdr(t, "x-user=((?i)a)lice"), b: hdr(t, "x-user=AL.*"), want: false},
		{name: "case matters without (?i)", a: hdr(t, "x-user=ALICE"), b: hdr(t, "x-user=alice"), want: false},
		{name: "(?i) folds Kelvin sign", a: hdr(t, "x-unit=(?i)k"), b: hdr(t, "x-unit=\u212a"), want: true,
			headers: map[string]string{"x-unit": "\u212a"}},
		{name: "classes disjoint", a: hdr(t, "x-user=[a-f]+"), b: hdr(t, "x-user=[g-z]+"), want: false},
		{name: "classes overlap", a: hdr(t, "x-user=[a-f]+"), b: hdr(t, "x-user=[e-z]+"), want: true,
			headers: map[string]string{"x-user": "e"}},
		{name: "negated class", a: hdr(t, "x-user=[^a-z]+"), b: hdr(t, "x-user=[a-z0-9]+"), want: true,
			headers: map[string]string{"x-user": "0"}},
		{name: "perl classes disjoint", a: hdr(t, `x-id=\d+`), b: hdr(t, `x-id=\D+`), want: false},
		{name: "alternations", a: hdr(t, "x-user=alice|bob"), b: hdr(t, "x-user=carol|bob"), want: true,
			headers: map[string]string{"x-user": "bob"}},
		{name: "alternations disjoint", a: hdr(t, "x-user=alice|bob"), b: hdr(t, "x-user=carol|dave"), want: false},
		{name: "header in one filter only", a: hdr(t, "x-user=alice"), b: hdr(t, "x-team=blue"), want: true,
			headers: map[string]string{"x-user": "alice", "x-team": "blue"}, why: "no header or path condition in common"},
		{name: "one shared header agrees, lone header", a: hdr(t, "x-user=alice", "x-env=dev"), b: hdr(t, "x-user=al.*"), want: true,
			headers: map[string]string{"x-user": "alice", "x-env": "dev"}},
		{name: "one shared header of two disagrees", a: hdr(t, "x-user=alice", "x-env=dev"), b: hdr(t, "x-env=prod", "x-user=alice"), want: false,
			why: "header x-env"},
		{name: "paths disjoint", a: pth(t, "/api/.*"), b: pth(t, "/web/.*"), want: false, why: "path"},
		{name: "paths overlap", a: pth(t, "/api/.*"), b: pth(t, "/api/v[0-9]+/.*"), want: true, path: "/api/v0/"},
		{name: "paths overlap at /", a: pth(t, "/.*"), b: pth(t, "/(api)?"), want: true, path: "/"},
		{name: "path in one filter only", a: pth(t, "/api/.*"), b: hdr(t, "x-user=alice"), want: true,
			path: "/api/", headers: map[string]string{"x-user": "alice"}},
		{name: "paths overlap, headers disjoint", a: pth(t, "/api/.*", "x-user=alice"), b: pth(t, "/.*", "x-user=bob"), want: false},
		{name: "paths disjoint, headers overlap", a: pth(t, "/a", "x-user=alice"), b: pth(t, "/b", "x-user=alice"), want: false},
		{name: "empty string languages", a: hdr(t, "x-user=a*"), b: hdr(t, "x-user=b*"), want: true,
			headers: map[string]string{"x-user": ""}},
		{name: "empty regex", a: hdr(t, "x-user="), b: hdr(t, "x-user=.*"), want: true, headers: map[string]string{"x-user": ""}},
		{name: "empty regex disjoint", a: hdr(t, "x-user="), b: hdr(t, "x-user=.+"), want: false},
		{name: "unicode", a: hdr(t, "x-name=[α-ω]+"), b: hdr(t, "x-name=.*λ.*"), want: true,
			headers: map[string]string{"x-name": "λ"}},
		{name: "unicode classes disjoint", a: hdr(t, `x-name=\p{Greek}+`), b: hdr(t, `x-name=\p{Latin}+`), want: false},
		{name: "unicode (?i)", a: hdr(t, "x-name=(?i)ärger"), b: hdr(t, "x-name=ÄRGER"), want: true,
			headers: map[string]string{"x-name": "ÄRGER"}},
		{name: "dot excludes newline", a: hdr(t, "x-v=a.b"), b: hdr(t, `x-v=a\nb`), want: false},
		{name: "(?s) dot includes newline", a: hdr(t, "x-v=(?s)a.b"), b: hdr(t, `x-v=a\nb`), want: true,
			headers: map[string]string{"x-v": "a\nb"}},
		{name: "(?s) dot vs class", a: hdr(t, "x-v=(?s)a.b"), b: hdr(t, `x-v=a[\n-\r]b`), want: true,
			headers: map[string]string{"x-v": "a\nb"}},
		{name: "dot prefers a letter", a: hdr(t, "x-v=.."), b: hdr(t, "x-v=.+"), want: true,
			headers: map[string]string{"x-v": "aa"}},
		{name: "word boundary", a: hdr(t, `x-v=a\b.*`), b: hdr(t, "x-v=ab"), want: false},
		{name: "word boundary met", a: hdr(t, `x-v=a\b.*`), b: hdr(t, "x-v=a[-b]"), want: true,
			headers: map[string]string{"x-v": "a-"}},
		{name: "non word boundary", a: hdr(t, `x-v=a\B.*`), b: hdr(t, "x-v=a[-b]"), want: true,
			headers: map[string]string{"x-v": "ab"}},
		{name: "word boundary at the ends", a: hdr(t, `x-v=\b.*\b`), b: hdr(t, "x-v=-|x"), want: true,
			headers: map[string]string{"x-v": "x"}},
		{name: "multiline anchors", a: hdr(t, `x-v=(?m)a$\n^b`), b: hdr(t, `x-v=a(?s:.)b`), want: true,
			headers: map[string]string{"x-v": "a\nb"}},
		{name: "multiline anchors unmet", a: hdr(t, `x-v=(?m)a$(?s:.)b`), b: hdr(t, `x-v=a.b`), want: false},
		{name: "text anchors are not line anchors", a: hdr(t, `x-v=(?s)a$.*`), b: hdr(t, `x-v=a\nb`), want: false},
		{name: "repetition counts", a: hdr(t, "x-v=a{3,5}"), b: hdr(t, "x-v=a{5,7}"), want: true,
			headers: map[string]string{"x-v": "aaaaa"}},
		{name: "repetition counts disjoint", a: hdr(t, "x-v=(aa)+"), b: hdr(t, "x-v=a(aa)*"), want: false},
		{name: "captures and non-greedy", a: hdr(t, "x-v=(a+?)(b*)"), b: hdr(t, "x-v=(?U)a+b"), want: true,
			headers: map[string]string{"x-v": "ab"}},
		{name: "quoted literal", a: hdr(t, `x-v=\Qa.b`), b: hdr(t, "x-v=a.b"), want: true, headers: map[string]string{"x-v": "a.b"}},
		{name: "quoted literal disjoint", a: hdr(t, `x-v=\Qa.b\E`), b: hdr(t, "x-v=axb"), want: false},
		{name: "replacement character", a: hdr(t, `x-v=\x{FFFD}`), b: hdr(t, "x-v=."), want: true,
			headers: map[string]string{"x-v": "\uFFFD"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ex, why := checkConflict(t, tt.a, tt.b)
			if got != tt.want {
				t.Fatalf("Conflict = %v (%s), want %v", got, why, tt.want)
			}
			if tt.why != "" && !strings.Contains(why, tt.why) {
				t.Errorf("why = %q, want it to contain %q", why, tt.why)
			}
			if !got {
				if ex != nil {
					t.Errorf("example %v without conflict", ex)
				}
				return
			}
			if tt.nilEx {
				if ex != nil {
					t.Errorf("example = %v, want nil", ex)
				}
				return
			}
			if ex == nil {
				if tt.headers != nil || tt.path != "" {
					t.Fatalf("no example (%s)", why)
				}
				return
			}
			for name, want := range tt.headers {
				if got := ex.Headers[name]; got != want {
					t.Errorf("example header %s = %q, want %q (%v)", name, got, want, ex)
				}
			}
			if tt.headers != nil && len(ex.Headers) != len(tt.headers) {
				t.Errorf("example headers = %v, want %v", ex.Headers, tt.headers)
			}
			if tt.path != "" && ex.Path != tt.path {
				t.Errorf("example path = %q, want %q", ex.Path, tt.path)
			}
			t.Logf("%s: %v", why, ex)
		})
	}
}

func TestExampleString(t *testing.T) {
	tests := []struct {
		name string
		ex   *Example
		want string
	}{
		{"nil", nil, "any request"},
		{"path only", &Example{Path: "/api/v1"}, "GET /api/v1"},
		{"one header", &Example{Path: "/", Headers: map[string]string{"x-user": "alice"}}, "GET / with x-user: alice"},
		{"sorted headers", &Example{Path: "/path", Headers: map[string]string{"x-user": "alice", "x-b": "c"}},
			"GET /path with x-b: c, x-user: alice"},
		{"quoted values", &Example{Path: "", Headers: map[string]string{"x-a": "", "x-b": "a b", "x-c": "a\nb", "x-d": "a,b"}},
			`GET "" with x-a: "", x-b: "a b", x-c: "a\nb", x-d: "a,b"`},
		{"unicode stays", &Example{Path: "/λ", Headers: map[string]string{"x-name": "ärger"}}, "GET /λ with x-name: ärger"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ex.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		in       string
		name, re string
		err      string // substring; "" = no error
	}{
		{in: "x-user=alice", name: "x-user", re: "alice"},
		{in: "X-User=Alice", name: "x-user", re: "Alice"},
		{in: "x-user=a=b", name: "x-user", re: "a=b"},
		{in: "x-user=", name: "x-user", re: ""},
		{in: "x-user=.*", name: "x-user", re: ".*"},
		{in: `x-user=\Qa(b`, name: "x-user", re: `\Qa(b`},
		{in: "!#$%&'*+-.^_`|~09AZaz=v", name: "!#$%&'*+-.^_`|~09azaz", re: "v"},
		{in: "x-user", err: "missing '='"},
		{in: "=alice", err: "empty header name"},
		{in: "x user=alice", err: "character ' ' at offset 1"},
		{in: "x:user=alice", err: "character ':' at offset 1"},
		{in: "x-üser=alice", err: "character 'ü' at offset 2"},
		{in: "x-user=a(b", err: "regex `a(b` (at offset 7 of `x-user=a(b`): missing closing ) at `a(b`"},
		{in: "x-user=[z-a]", err: "invalid character class range"},
		{in: "x-user=a**", err: "invalid nested repetition operator"},
		{in: `x-user=a\bb`, err: "matches no value"},
		{in: `x-user=\x{D800}`, err: "U+D800 is a surrogate"},
		{in: `x-user=a|[\x{D800}-\x{DFFF}]`, name: "x-user", re: `a|[\x{D800}-\x{DFFF}]`},
		{in: `x-user=[\x{D800}-\x{DFFF}]`, err: "matches no value"},
		{in: "x-user=[^\\x00-\\x{10FFFF}]", err: "matches no value"},
		{in: "x-user=" + strings.Repeat("[a-z]{1000}", 6), err: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			name, re, err := ParseHeader(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseHeader(%q) error = %v, want it to contain %q", tt.in, err, tt.err)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatalf("ParseHeader(%q): %v", tt.in, err)
			}
			if name != tt.name || re != tt.re {
				t.Errorf("ParseHeader(%q) = %q, %q, want %q, %q", tt.in, name, re, tt.name, tt.re)
			}
		})
	}
}

func TestNewFilter(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		path    string
		empty   bool
		err     string
	}{
		{name: "empty is global", empty: true},
		{name: "headers and path", headers: []string{"x-a=1", "x-b=2"}, path: "/api/.*"},
		{name: "duplicate header", headers: []string{"x-a=1", "x-b=2", "X-A=3"}, err: "header x-a given twice (conditions 1 and 3)"},
		{name: "bad header names it", headers: []string{"x-a=1", "x-b=("}, err: "header x-b"},
		{name: "bad path", path: "/api/(", err: "path regex `/api/(`"},
		{name: "path matching nothing", path: `/a\bb`, err: "matches no value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFilter(tt.headers, tt.path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.IsEmpty() != tt.empty {
				t.Errorf("IsEmpty() = %v, want %v", f.IsEmpty(), tt.empty)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	f := mustFilter(t, []string{"X-User=al.*", "x-env=dev|prod"}, "/api/.*")
	tests := []struct {
		name    string
		headers http.Header
		path    string
		want    bool
	}{
		{"all match", http.Header{"X-User": {"alice"}, "X-Env": {"dev"}}, "/api/v1", true},
		{"anchored value", http.Header{"X-User": {"xalice"}, "X-Env": {"dev"}}, "/api/v1", false},
		{"anchored path", http.Header{"X-User": {"alice"}, "X-Env": {"dev"}}, "/x/api/v1", false},
		{"missing header", http.Header{"X-User": {"alice"}}, "/api/v1", false},
		{"wrong path", http.Header{"X-User": {"alice"}, "X-Env": {"dev"}}, "/web", false},
		{"values are joined", http.Header{"X-User": {"alice"}, "X-Env": {"dev", "prod"}}, "/api/v1", false},
		{"extra headers ignored", http.Header{"X-User": {"alice"}, "X-Env": {"prod"}, "X-Other": {"1"}}, "/api/", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.Matches(tt.headers.Values, tt.path); got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
	joined := mustFilter(t, []string{"x-env=dev, prod"}, "")
	if !joined.Matches(http.Header{"X-Env": {"dev", "prod"}}.Values, "/") {
		t.Error("joined field value does not match")
	}
	if !(Filter{}).Matches(nil, "") {
		t.Error("empty filter does not match everything")
	}
	if mustFilter(t, []string{"x-a=.*"}, "").Matches(nil, "/") {
		t.Error("absent header matched .*")
	}
}

// Matches is on the agent's per-request path: no allocations.
func TestMatchesAllocs(t *testing.T) {
	f := mustFilter(t, []string{"x-user=al.*", "x-env=dev|prod"}, "/api/.*")
	h := map[string][]string{"x-user": {"alice"}, "x-env": {"prod"}}
	get := func(name string) []string { return h[name] }
	if n := testing.AllocsPerRun(100, func() {
		if !f.Matches(get, "/api/v1") {
			t.Fatal("no match")
		}
	}); n != 0 {
		t.Errorf("Matches allocates %v times", n)
	}
}

// A request carrying two values of a header must not match two filters
// that Conflict calls disjoint by that header.
func TestMatchesMultiValueSound(t *testing.T) {
	a, b := hdr(t, "x-user=alice"), hdr(t, "x-user=bob")
	if c, _, _ := Conflict(a, b); c {
		t.Fatal("alice and bob conflict")
	}
	h := http.Header{"X-User": {"alice", "bob"}}
	if a.Filter.Matches(h.Values, "/") && b.Filter.Matches(h.Values, "/") {
		t.Error("a request matches two disjoint filters")
	}
}

func TestFilterLiteral(t *testing.T) {
	// Built as a literal, not compiled: works, just slower.
	f := Filter{Headers: map[string]string{"X-User": "al.*"}, Path: "/api/.*"}
	if !f.Matches(http.Header{"X-User": {"alice"}}.Values, "/api/x") {
		t.Error("literal filter does not match")
	}
	g := Filter{Headers: map[string]string{"x-user": ".*ice"}}
	c, ex, why := checkConflict(t, Intercept{Workload: wl, Kind: HTTP, Filter: f}, Intercept{Workload: wl, Kind: HTTP, Filter: g})
	if !c || ex == nil || ex.Headers["x-user"] != "alice" {
		t.Errorf("Conflict = %v, %v, %s", c, ex, why)
	}

	bad := Filter{Headers: map[string]string{"x-user": "("}}
	if bad.Matches(http.Header{"X-User": {"("}}.Values, "/") {
		t.Error("invalid filter matched")
	}
	c, ex, why = checkConflict(t, Intercept{Workload: wl, Kind: HTTP, Filter: bad}, Intercept{Workload: wl, Kind: HTTP, Filter: g})
	if !c || ex != nil || !strings.Contains(why, "treated as conflicting") {
		t.Errorf("invalid filter: Conflict = %v, %v, %s", c, ex, why)
	}
	dup := Filter{Headers: map[string]string{"x-user": "a", "X-User": "a"}}
	if c, _, why := Conflict(Intercept{Workload: wl, Kind: HTTP, Filter: dup}, Intercept{Workload: wl, Kind: HTTP, Filter: g}); !c {
		t.Errorf("duplicate header: Conflict = false, %s", why)
	}

	// A literal filter whose regex matches nothing takes no request.
	empty := Filter{Headers: map[string]string{"x-user": `a\bb`}}
	if c, _, why := checkConflict(t, Intercept{Workload: wl, Kind: HTTP, Filter: empty}, Intercept{Workload: wl, Kind: HTTP, Filter: g}); c {
		t.Errorf("empty language conflicts: %s", why)
	}

	compiled, err := f.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if compiled.c == nil || !compiled.Equal(Filter{Headers: map[string]string{"x-user": "al.*"}, Path: "/api/.*"}) {
		t.Errorf("Compile = %+v", compiled)
	}
	if _, err := (Filter{Headers: map[string]string{"a=b": "c"}}).Compile(); err == nil || !strings.Contains(err.Error(), "'='") {
		t.Errorf("Compile with a bad name: %v", err)
	}
}

func TestFilterChangedAfterCompile(t *testing.T) {
	f := mustFilter(t, []string{"x-user=alice"}, "")
	g := f // copies share the map and the compiled form
	f.Headers["x-user"] = "bob"
	if !g.Matches(http.Header{"X-User": {"bob"}}.Values, "/") {
		t.Error("stale compiled form used after the map changed")
	}
	f.Path = "/x"
	if f.Matches(http.Header{"X-User": {"bob"}}.Values, "/") {
		t.Error("stale compiled form used after the path changed")
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Global: "global", HTTP: "http", Replace: "replace", 9: "kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", k, got, want)
		}
	}
}

func TestFilterString(t *testing.T) {
	f := mustFilter(t, []string{"x-b=2", "x-a=1"}, "/api/.*")
	if got, want := f.String(), `--http-header x-a=1 --http-header x-b=2 --http-path '/api/.*'`; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	if got := (Filter{}).String(); got != "(all requests)" {
		t.Errorf("empty String() = %s", got)
	}
}

// Regexes whose product is too large are answered "conflict", quickly.
func TestConflictBound(t *testing.T) {
	a := hdr(t, "x-v=(a|b)*a(a|b){15}")
	b := hdr(t, "x-v=(a|b)*b(a|b){16}")
	start := time.Now()
	c, ex, why := checkConflict(t, a, b)
	t.Logf("%v %v %s in %v", c, ex, why, time.Since(start))
	if !c || ex != nil || !strings.Contains(why, "too complex") {
		t.Errorf("Conflict = %v, %v, %q; want an undecided conflict", c, ex, why)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	// A disjoint condition still decides, whatever else is undecided.
	a2 := pth(t, "/a", "x-v=(a|b)*a(a|b){15}")
	b2 := pth(t, "/b", "x-v=(a|b)*b(a|b){16}")
	if c, _, why := checkConflict(t, a2, b2); c {
		t.Errorf("disjoint paths but conflict: %s", why)
	}
}

// Conflict and Matches run from many goroutines on shared filters.
func TestConcurrent(t *testing.T) {
	var fs []Intercept
	for i := range 20 {
		fs = append(fs, hdr(t, fmt.Sprintf("x-user=u%d.*", i), fmt.Sprintf("x-n=[0-%d]+", i%10)))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range fs {
				a, b := fs[(i+g)%len(fs)], fs[(i*7+g)%len(fs)]
				c, ex, why := Conflict(a, b)
				if c && ex != nil && !(takes(a, ex) && takes(b, ex)) {
					t.Errorf("example %v (%s) not taken by both", ex, why)
				}
			}
		}()
	}
	wg.Wait()
}

package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tether-dev/tether/platform"
	pbm "github.com/tether-dev/tether/rpc/manager"
)

// fakeManager answers Arrive with the subnets it is told, on a loopback
// port: a manager that may change its mind, or turn rogue, between arrivals.
type fakeManager struct {
	pbm.UnimplementedManagerServer
	addr string

	arrivals atomic.Int32

	mu      sync.Mutex // guards subnets and refuse
	subnets []string
	refuse  error // Arrive's answer when set
}

func newFakeManager(t testing.TB, subnets ...string) *fakeManager {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeManager{addr: ln.Addr().String(), subnets: subnets}
	srv := grpc.NewServer()
	pbm.RegisterManagerServer(srv, m)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return m
}

func (m *fakeManager) advertise(subnets ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subnets = subnets
}

func (m *fakeManager) refuseWith(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refuse = err
}

func (m *fakeManager) Arrive(context.Context, *pbm.ArriveRequest) (*pbm.ArriveResponse, error) {
	m.arrivals.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refuse != nil {
		return nil, m.refuse
	}
	return &pbm.ArriveResponse{SessionId: "s1", SessionSecret: "secret", Resumed: true, Subnets: slices.Clone(m.subnets)}, nil
}

// routedSession is a session with the fake manager and a fake router,
// routing subnets as startSession left it; no device.
func routedSession(t testing.TB, m *fakeManager, subnets ...string) (*session, *platform.FakeRouter) {
	t.Helper()
	cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	r := &platform.FakeRouter{}
	s := &session{addr: m.addr, log: slog.New(slog.DiscardHandler), cc: cc, router: r,
		floor: routeFloor{v4: DefaultMinPrefixLength, v6: DefaultMinPrefixLengthIPv6},
		// The host's own networks are not this test's business.
		allowConflicts: true}
	p := prefixesOf(t, subnets)
	s.subnets.Store(&p)
	if err := r.Set(p); err != nil {
		t.Fatal(err)
	}
	return s, r
}

// TestRearriveChecksRoutes: what a manager advertises after a reconnect
// passes the checks of connect; a refused set leaves the routes as they
// were and says so in the notices.
func TestRearriveChecksRoutes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		advertised []string
		want       []string
		notice     string
	}{
		{"a new cluster subnet", []string{"198.18.2.0/24", "198.18.3.0/24"}, []string{"198.18.2.0/24", "198.18.3.0/24"}, ""},
		{"the default route in halves", []string{"0.0.0.0/1", "128.0.0.0/1"}, []string{"198.18.2.0/24"}, "wider than /8"},
		{"256 /8s", eighths(), []string{"198.18.2.0/24"}, "cover every IPv4 address"},
		{"wider than the floor", []string{"198.18.2.0/24", "10.0.0.0/7"}, []string{"198.18.2.0/24"}, "10.0.0.0/7, wider than /8"},
		{"none", nil, []string{"198.18.2.0/24"}, "no subnets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeManager(t, "198.18.2.0/24")
			s, r := routedSession(t, m, "198.18.2.0/24")
			m.advertise(tc.advertised...)
			s.rearrive(context.Background())
			s.rearrive(context.Background()) // the same again: one notice
			want := prefixesOf(t, tc.want)
			if got := s.routes(); !equalPrefixes(got, want) {
				t.Errorf("subnets %v, want %v", got, want)
			}
			if got := r.Routes(); !equalPrefixes(got, want) {
				t.Errorf("routes %v, want %v (sets: %v)", got, want, r.Sets())
			}
			_, notices := s.interceptStatus()
			if tc.notice == "" {
				if len(notices) != 0 {
					t.Errorf("notices %q, want none", notices)
				}
				return
			}
			if len(notices) != 1 || !strings.Contains(notices[0], "routes unchanged") || !strings.Contains(notices[0], tc.notice) {
				t.Errorf("notices %q, want one saying routes unchanged and %q", notices, tc.notice)
			}
			if n := len(r.Sets()); n != 1 {
				t.Errorf("a refused set reached the router: sets %v", r.Sets())
			}
		})
	}
}

func eighths() []string {
	out := make([]string, 256)
	for i := range out {
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(i)}), 8).String()
	}
	return out
}

// TestRearriveRouterRefusal: a set the router refuses (a route another
// device has) leaves the routes as they were, and says so.
func TestRearriveRouterRefusal(t *testing.T) {
	m := newFakeManager(t, "198.18.2.0/24")
	s, r := routedSession(t, m, "198.18.2.0/24")
	r.FailSet(errors.New("route 198.18.3.0/24 dev othervpn0 already exists"))
	m.advertise("198.18.2.0/24", "198.18.3.0/24")
	s.rearrive(context.Background())
	r.FailSet(nil)
	if got, want := s.routes(), prefixesOf(t, []string{"198.18.2.0/24"}); !equalPrefixes(got, want) {
		t.Errorf("subnets %v, want %v", got, want)
	}
	sets := r.Sets()
	if last := sets[len(sets)-1]; !equalPrefixes(last, prefixesOf(t, []string{"198.18.2.0/24"})) {
		t.Errorf("the router was left with %v (sets %v)", last, sets)
	}
	if _, notices := s.interceptStatus(); len(notices) != 1 || !strings.Contains(notices[0], "othervpn0") {
		t.Errorf("notices %q, want the router's refusal", notices)
	}
}

// TestSubnetsRace: rearrive replaces the subnets while status reads them;
// the race detector fails this test on a plain field.
func TestSubnetsRace(t *testing.T) {
	m := newFakeManager(t, "198.18.2.0/24")
	s, _ := routedSession(t, m, "198.18.2.0/24")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 20 {
			m.advertise(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24).String())
			s.rearrive(context.Background())
		}
	}()
	for range 200 {
		for _, p := range s.routes() {
			if !p.IsValid() {
				t.Fatalf("torn subnet %v", p)
			}
		}
	}
	wg.Wait()
}

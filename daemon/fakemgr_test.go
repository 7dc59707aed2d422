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
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/activity"
	"github.com/tether-dev/tether/platform"
	pbm "github.com/tether-dev/tether/rpc/manager"
)

// fakeManager answers Arrive with the subnets it is told, on a loopback
// port: a manager that may change its mind, or turn rogue, between arrivals.
type fakeManager struct {
	pbm.UnimplementedManagerServer
	addr string

	arrivals atomic.Int32
	departs  atomic.Int32

	mu      sync.Mutex // guards subnets, refuse and build
	subnets []string
	refuse  error          // Arrive's answer when set
	build   *pbm.BuildInfo // the manager's build Arrive reports
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

func (m *fakeManager) setBuild(b *pbm.BuildInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.build = b
}

func (m *fakeManager) Depart(context.Context, *pbm.DepartRequest) (*pbm.DepartResponse, error) {
	m.departs.Add(1)
	return &pbm.DepartResponse{}, nil
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
	return &pbm.ArriveResponse{SessionId: "s1", SessionSecret: "secret", Resumed: true, Subnets: slices.Clone(m.subnets), ManagerBuild: m.build}, nil
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
	s := &session{addr: m.addr, log: slog.New(slog.DiscardHandler), cc: cc, router: r, tracker: activity.NewTracker(nil, nil),
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
// passes the checks of connect; when nothing advertised can be routed the
// routes stay as they were and the notices say so.
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
		// Refused on its own: the rest is routed, status names it.
		{"wider than the floor", []string{"198.18.2.0/24", "10.0.0.0/7"}, []string{"198.18.2.0/24"}, ""},
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

// TestRearriveTTLIsFinal: a running daemon whose link comes back does not
// re-arrive silently into a session the TTL ended: not when the manager
// says it ended it (NotFound), and not when its own idle time, on the
// clock that counts suspend, is beyond the TTL (it does not even ask).
func TestRearriveTTLIsFinal(t *testing.T) {
	const managerSays = "session ended by the traffic manager: inactive for 1m0s (grpc.connectionTTL)"
	for _, tc := range []struct {
		name     string
		idle     time.Duration
		arrivals int32
		reason   string
	}{
		{"the manager ended it", 10 * time.Second, 1, managerSays},
		{"idle beyond the TTL", 2 * time.Minute, 0, "session ended: inactive for 1m0s (grpc.connectionTTL), last activity 2m0s ago"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeManager(t, "198.18.2.0/24")
			m.refuseWith(status.Error(codes.NotFound, managerSays))
			s, _ := routedSession(t, m, "198.18.2.0/24")
			var now time.Duration
			s.tracker = activity.NewTracker(func() time.Duration { return now }, nil)
			s.tracker.NoteCLI("connect")
			now = tc.idle
			s.ttl.Store(int64(time.Minute))
			ended := make(chan string, 1)
			s.onEnded = func(_ *session, reason string) { ended <- reason }
			s.rearrive(context.Background())
			select {
			case got := <-ended:
				if !strings.HasPrefix(got, tc.reason) {
					t.Fatalf("ended with %q, want %q", got, tc.reason)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the session did not end")
			}
			if n := m.arrivals.Load(); n != tc.arrivals {
				t.Fatalf("%d arrivals, want %d", n, tc.arrivals)
			}
		})
	}
}

// TestLiveSubnets: subnets that change on the watch stream are routed
// without a reconnect; each passes the checks of connect on its own, and
// a refused one is left out and named in status while the rest is routed.
func TestLiveSubnets(t *testing.T) {
	for _, tc := range []struct {
		name       string
		advertised []string
		want       []string
		refused    []string // substrings, one per refusal
		notice     string
	}{
		{"one added", []string{"198.18.2.0/24", "198.18.128.0/24"}, []string{"198.18.2.0/24", "198.18.128.0/24"}, nil, ""},
		{"one removed, one added", []string{"198.18.160.0/24"}, []string{"198.18.160.0/24"}, nil, ""},
		{"a wide one refused, the rest routed", []string{"198.18.2.0/24", "10.0.0.0/7", "198.18.128.0/24"}, []string{"198.18.2.0/24", "198.18.128.0/24"},
			[]string{"10.0.0.0/7, wider than /8 (routes.minPrefixLength)"}, ""},
		{"the manager's own subnet refused", []string{"198.18.2.0/24", "127.0.0.0/8"}, []string{"198.18.2.0/24"},
			[]string{"inside the subnet 127.0.0.0/8"}, ""},
		{"another device's route refused", []string{"198.18.2.0/24", "198.18.99.0/24", "198.18.128.0/24"}, []string{"198.18.2.0/24", "198.18.128.0/24"},
			[]string{"198.18.99.0/24: a route for it exists through dev othervpn0"}, ""},
		{"a bad one refused", []string{"198.18.2.0/24", "nonsense"}, []string{"198.18.2.0/24"}, []string{`bad subnet "nonsense"`}, ""},
		{"all refused: unchanged", []string{"0.0.0.0/1", "128.0.0.0/1"}, []string{"198.18.2.0/24"},
			[]string{"0.0.0.0/1, wider than /8", "128.0.0.0/1, wider than /8"}, "routes unchanged"},
		{"none: unchanged", []string{}, []string{"198.18.2.0/24"}, nil, "advertised no subnets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeManager(t, "198.18.2.0/24")
			s, r := routedSession(t, m, "198.18.2.0/24")
			r.Take(netip.MustParsePrefix("198.18.99.0/24"), "dev othervpn0")
			s.handleEvent(context.Background(), &pbm.SessionEvent{Subnets: tc.advertised, SubnetsChanged: true})
			want := prefixesOf(t, tc.want)
			if got := s.routes(); !equalPrefixes(got, want) {
				t.Errorf("subnets %v, want %v", got, want)
			}
			if got := r.Routes(); !equalPrefixes(got, want) {
				t.Errorf("routes %v, want %v (sets: %v)", got, want, r.Sets())
			}
			refused := s.refusedSubnets()
			if len(refused) != len(tc.refused) {
				t.Fatalf("refused %q, want %d like %q", refused, len(tc.refused), tc.refused)
			}
			for i, w := range tc.refused {
				if !strings.Contains(refused[i], w) {
					t.Errorf("refused[%d] = %q, want it to say %q", i, refused[i], w)
				}
			}
			_, notices := s.interceptStatus()
			if (tc.notice == "") != (len(notices) == 0) || (tc.notice != "" && !strings.Contains(notices[0], tc.notice)) {
				t.Errorf("notices %q, want %q", notices, tc.notice)
			}
		})
	}
}

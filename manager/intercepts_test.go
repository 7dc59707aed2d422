package manager

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/activity"
	"github.com/tether-dev/tether/manager/rbac"
	pb "github.com/tether-dev/tether/rpc/manager"
)

// lockedClock is a manager clock the test moves while handlers read it.
type lockedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *lockedClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *lockedClock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// allowUsers is an Authorizer that lets the listed users do anything, and
// everyone create intercepts.
type allowUsers map[string]bool

func (a allowUsers) Authorize(_ context.Context, s rbac.Subject, r rbac.Request) (bool, string, error) {
	if a[s.User] || r == rbac.CreateInterceptRequest(r.Namespace) {
		return true, "test", nil
	}
	return false, "user " + s.User + " may not " + r.Verb + " " + r.Resource, nil
}

// testPolicy: alice may revoke; group devs (alice, bob) may create
// intercepts in namespace default; agent web-agent serves default/web.
const testPolicy = `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: revoker, namespace: tether}
rules:
- {apiGroups: [""], resources: [configmaps], resourceNames: [traffic-manager], verbs: [get, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: revokers, namespace: tether}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: revoker}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: interceptor}
rules:
- {apiGroups: [tether.dev], resources: [intercepts], verbs: [create]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: devs, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: interceptor}
subjects:
- {kind: Group, apiGroup: rbac.authorization.k8s.io, name: devs}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: web-agent, namespace: default}
rules:
- {apiGroups: [tether.dev], resources: [workloads], resourceNames: [web], verbs: [serve]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web-agents, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: web-agent}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: web-agent}
`

// testTokens: developers alice and bob (group devs), carol (no group),
// agents web-agent (bound to default/web) and db-agent (bound to nothing).
var testTokens = Tokens{
	"t-alice":     {User: "alice", Groups: []string{"devs"}},
	"t-bob":       {User: "bob", Groups: []string{"devs"}},
	"t-carol":     {User: "carol"},
	"t-web-agent": {User: "web-agent", Groups: []string{AgentGroup}},
	"t-db-agent":  {User: "db-agent", Groups: []string{AgentGroup}},
}

// withToken is an incoming context with a bearer token.
func withToken(ctx context.Context, token string) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	return metadata.NewIncomingContext(ctx, metadata.Join(md, metadata.Pairs("authorization", "Bearer "+token)))
}

func newInterceptServer(t *testing.T) (*Server, *lockedClock, map[string]context.Context) {
	t.Helper()
	return newPolicyServer(t, testPolicy, "alice", "bob")
}

// newPolicyServer is a manager with testTokens and policy, and a session
// for each of users (its context carries the session and the user's token).
func newPolicyServer(t *testing.T, policy string, users ...string) (*Server, *lockedClock, map[string]context.Context) {
	t.Helper()
	c := &lockedClock{now: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)}
	p, err := rbac.ParsePolicy(strings.NewReader(policy))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Now: c.Now,
		Log: slog.New(slog.DiscardHandler), Authorizer: p, Authenticator: testTokens})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	ctxs := map[string]context.Context{}
	for _, u := range users {
		resp, err := s.Arrive(withToken(context.Background(), "t-"+u), &pb.ArriveRequest{User: u, Host: u + "-laptop", DaemonInstance: "d-" + u, ByCli: true})
		if err != nil {
			t.Fatal(err)
		}
		ctxs[u] = withToken(withCreds(resp.SessionId, resp.SessionSecret), "t-"+u)
	}
	return s, c, ctxs
}

func header(name, user, re string) *pb.CreateInterceptRequest {
	return &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: name, Workload: "default/web", Port: 8080,
		Kind: pb.InterceptKind_HTTP, Headers: map[string]string{"x-user": re}}}
}

func states(t *testing.T, s *Server, ctx context.Context) map[string]*pb.InterceptInfo {
	t.Helper()
	resp, err := s.ListIntercepts(ctx, &pb.ListInterceptsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*pb.InterceptInfo{}
	for _, x := range resp.Intercepts {
		out[x.Spec.Name] = x
	}
	return out
}

func TestInterceptBlockRightAndConflictFlag(t *testing.T) {
	s, clk, u := newInterceptServer(t)
	if _, err := s.CreateIntercept(u["alice"], header("a", "alice", "alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateIntercept(u["bob"], header("b", "bob", "bob")); err != nil {
		t.Fatalf("disjoint filters must both succeed: %v", err)
	}

	// Alice was active a minute ago: a too-broad filter is refused.
	clk.Add(time.Minute)
	_, err := s.CreateIntercept(u["bob"], header("wide", "bob", ".*ice"))
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("too-broad filter while the holder is active: %v", err)
	}
	for _, want := range []string{`"a"`, "alice@alice-laptop", "x-user: alice", "idle for 1m0s", "lapses at 2026-01-01T09:10:00Z (in 9m0s)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal lacks %q: %s", want, msg)
		}
	}

	// Eleven minutes without activity: the block lapsed, bob wins at once.
	clk.Add(10 * time.Minute)
	if _, err := s.CreateIntercept(u["bob"], header("wide", "bob", ".*ice")); err != nil {
		t.Fatalf("filter against an inactive holder: %v", err)
	}
	st := states(t, s, u["alice"])
	if a := st["a"]; a.State != StateConflict || !strings.Contains(a.Message, `superseded by intercept "wide"`) || !strings.Contains(a.Message, "bob@bob-laptop") || a.Blocks {
		t.Fatalf("alice's intercept: %v", a)
	}
	if b := st["b"]; b.State != StateActive {
		t.Fatalf("bob's disjoint intercept: %v", b)
	}

	// The superseding intercept ends: alice's comes back by itself.
	if _, err := s.RemoveIntercept(u["bob"], &pb.RemoveInterceptRequest{Name: "wide"}); err != nil {
		t.Fatal(err)
	}
	if a := states(t, s, u["alice"])["a"]; a.State != StateActive || !strings.Contains(a.Message, "restored") {
		t.Fatalf("alice's intercept after wide left: %v", a)
	}
}

func TestInterceptOwnConflictAndKinds(t *testing.T) {
	s, _, u := newInterceptServer(t)
	global := &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "g", Workload: "default/web", Port: 8080, Kind: pb.InterceptKind_GLOBAL}}
	if _, err := s.CreateIntercept(u["alice"], global); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateIntercept(u["alice"], header("h", "alice", "x")); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("own conflicting intercept: %v", err)
	}
	other := &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "o", Workload: "default/web", Port: 9090, Kind: pb.InterceptKind_GLOBAL}}
	if _, err := s.CreateIntercept(u["bob"], other); err != nil {
		t.Fatalf("another port of the workload: %v", err)
	}
	replace := &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "r", Workload: "default/web", Kind: pb.InterceptKind_REPLACE, Ports: []uint32{9100}}}
	if _, err := s.CreateIntercept(u["bob"], replace); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("replace over an active global: %v", err)
	}
	for name, spec := range map[string]*pb.InterceptSpec{
		"no name":      {Workload: "default/web", Port: 1, Kind: pb.InterceptKind_GLOBAL},
		"bad workload": {Name: "x", Workload: "web", Port: 1, Kind: pb.InterceptKind_GLOBAL},
		"bad regex":    {Name: "x", Workload: "default/web", Port: 1, Kind: pb.InterceptKind_HTTP, Headers: map[string]string{"x-user": "("}},
		// The agent compiles the spec's headers as they are; a name it
		// rejects would make an intercept that gets no request.
		"bad header name": {Name: "x", Workload: "default/web", Port: 1, Kind: pb.InterceptKind_HTTP, Headers: map[string]string{"x=user": "a"}},
		"no port":         {Name: "x", Workload: "default/web", Kind: pb.InterceptKind_GLOBAL},
	} {
		if _, err := s.CreateIntercept(u["bob"], &pb.CreateInterceptRequest{Spec: spec}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestInterceptRace: two active users racing for the same workload never
// both win.
func TestInterceptRace(t *testing.T) {
	for range 50 {
		s, _, u := newInterceptServer(t)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, user := range []string{"alice", "bob"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.CreateIntercept(u[user], &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "g", Workload: "default/web", Port: 8080, Kind: pb.InterceptKind_GLOBAL}})
			}()
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("exactly one must win: %v, %v", errs[0], errs[1])
		}
	}
}

func TestInterceptsEndWithSessionAndRevoke(t *testing.T) {
	s, clk, u := newInterceptServer(t)
	s.CreateIntercept(u["alice"], header("a", "alice", "alice"))
	info, _ := s.CreateIntercept(u["bob"], header("b", "bob", "bob"))
	if _, err := s.RevokeIntercept(u["bob"], &pb.RevokeInterceptRequest{Id: info.Id}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "bob") {
		t.Fatalf("revoke without RBAC: %v", err)
	}
	if _, err := s.RevokeIntercept(u["alice"], &pb.RevokeInterceptRequest{Id: info.Id}); err != nil {
		t.Fatalf("revoke with RBAC: %v", err)
	}
	bob, _ := s.authenticate(u["bob"])
	if len(bob.notices) != 1 || !strings.Contains(bob.notices[0], "revoked by alice at 2026-01-01T09:00:00Z") {
		t.Fatalf("bob's notices: %v", bob.notices)
	}
	clk.Add(25 * time.Hour)
	s.Expire(clk.Now())
	if n := len(s.intercepts); n != 0 {
		t.Fatalf("%d intercepts outlived their sessions", n)
	}
}

// TestUnknownOwnerHoldsNoBlockRight: a session whose activity a restarted
// manager does not know yet blocks nobody, and is told why honestly.
func TestUnknownOwnerHoldsNoBlockRight(t *testing.T) {
	s, clk, u := newInterceptServer(t)
	alice, err := s.authenticate(u["alice"])
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	alice.ledger = activity.NewUnknownLedger(clk.Now(), "d-alice") // as after a manager restart
	s.mu.Unlock()
	if _, err := s.CreateIntercept(u["alice"], header("a", "alice", "alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateIntercept(u["bob"], header("wide", "bob", ".*ice")); err != nil {
		t.Fatalf("a conflicting intercept against an UNKNOWN holder: %v", err)
	}
	if a := states(t, s, u["alice"])["a"]; a.State != StateConflict || !strings.Contains(a.Message, "the traffic manager restarted and no report of yours has dated your last activity yet") {
		t.Fatalf("alice's intercept: %v", a)
	}
}

package manager

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/manager/rbac"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// grpcLab is a manager with testTokens behind a real gRPC server, so that
// tests call it as clients do: metadata, streams, method names.
type grpcLab struct {
	s *Server
	c pb.ManagerClient
}

// newGRPCLab serves a manager with testTokens and policy ("" for none).
func newGRPCLab(t *testing.T, policy string) *grpcLab {
	t.Helper()
	cfg := Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Authenticator: testTokens}
	if policy != "" {
		p, err := rbac.ParsePolicy(strings.NewReader(policy))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Authorizer = p
	}
	m := startGRPC(t, cfg)
	return &grpcLab{s: m.s, c: m.client}
}

// as is an outgoing context with token; with a session, pass its id and
// secret too.
func as(token string, session ...string) context.Context {
	kv := []string{"authorization", "Bearer " + token}
	if len(session) == 2 {
		kv = append(kv, wire.MDSession, session[0], wire.MDSecret, session[1])
	}
	return metadata.AppendToOutgoingContext(context.Background(), kv...)
}

// arrive opens a session for user and returns the context of its calls.
func (l *grpcLab) arrive(t *testing.T, user string) context.Context {
	t.Helper()
	resp, err := l.c.Arrive(as("t-"+user), &pb.ArriveRequest{User: user, Host: user + "-laptop"})
	if err != nil {
		t.Fatalf("arrive %s: %v", user, err)
	}
	return as("t-"+user, resp.SessionId, resp.SessionSecret)
}

// watchAgent starts a WatchAgent stream and returns its first routes (or
// the refusal).
func (l *grpcLab) watchAgent(ctx context.Context, workload string, ports ...uint32) (*pb.AgentRoutes, error) {
	stream, err := l.c.WatchAgent(ctx, &pb.WatchAgentRequest{Workload: workload, Ports: ports})
	if err != nil {
		return nil, err
	}
	return stream.Recv()
}

// openFlow starts an AgentTunnel for intercept id on port; it returns the
// stream and the first answer's error, if the manager refused the call.
func (l *grpcLab) openFlow(ctx context.Context, id string, port uint32) (grpc.BidiStreamingClient[pb.Frame, pb.Frame], error) {
	stream, err := l.c.AgentTunnel(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&pb.Frame{Open: &pb.OpenFlow{Protocol: pb.Protocol_TCP, InterceptId: id, Source: "10.0.0.9:5000", Port: port}}); err != nil {
		_, err = stream.Recv() // the refusal, if the manager refused at once
		return nil, err
	}
	return stream, nil
}

// refusedFlow is the manager's answer to an AgentTunnel open that it
// refuses.
func (l *grpcLab) refusedFlow(ctx context.Context, id string, port uint32) error {
	st, err := l.openFlow(ctx, id, port)
	if err == nil {
		_, err = st.Recv()
	}
	return err
}

func (l *grpcLab) create(t *testing.T, ctx context.Context, spec *pb.InterceptSpec) *pb.InterceptInfo {
	t.Helper()
	info, err := l.c.CreateIntercept(ctx, &pb.CreateInterceptRequest{Spec: spec})
	if err != nil {
		t.Fatalf("create %s: %v", spec.Name, err)
	}
	return info
}

func wantRefusal(t *testing.T, what string, err error, code codes.Code, msg ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: %v, want %v", what, err, code)
	}
	for _, m := range msg {
		if !strings.Contains(status.Convert(err).Message(), m) {
			t.Errorf("%s: %q lacks %q", what, status.Convert(err).Message(), m)
		}
	}
}

// Roles: a user token is refused on agent calls and an agent token on
// user calls, saying which role is needed and how it is granted.
func TestRolesAreSeparate(t *testing.T) {
	l := newGRPCLab(t, testPolicy)
	alice := l.arrive(t, "alice")
	info := l.create(t, alice, &pb.InterceptSpec{Name: "g", Workload: "default/web", Port: 8080, Kind: pb.InterceptKind_GLOBAL})
	needsAgent := "needs the agent role (group tether:agents in auth.tokenFile); this token is user alice's"
	needsUser := "needs the user role (a token of auth.tokenFile outside group tether:agents); this token is agent web-agent's"

	// An agent token with alice's session credentials: still refused.
	resp, _ := l.c.Arrive(as("t-alice"), &pb.ArriveRequest{User: "alice"})
	agentWithSession := as("t-web-agent", resp.SessionId, resp.SessionSecret)
	for _, tc := range []struct {
		name string
		call func() error
		msg  string
	}{
		{"WatchAgent with a user token", func() error { _, err := l.watchAgent(as("t-alice"), "default/web", 8080); return err }, "WatchAgent " + needsAgent},
		{"AgentTunnel with a user token", func() error { return l.refusedFlow(as("t-alice"), info.Id, 8080) }, "AgentTunnel " + needsAgent},
		{"Arrive with an agent token", func() error { _, err := l.c.Arrive(as("t-web-agent"), &pb.ArriveRequest{User: "alice"}); return err }, "Arrive " + needsUser},
		{"resume with an agent token", func() error {
			_, err := l.c.Arrive(as("t-web-agent"), &pb.ArriveRequest{ResumeSessionId: resp.SessionId, ResumeSessionSecret: resp.SessionSecret})
			return err
		}, "Arrive " + needsUser},
		{"ListIntercepts with an agent token", func() error { _, err := l.c.ListIntercepts(agentWithSession, &pb.ListInterceptsRequest{}); return err }, "ListIntercepts " + needsUser},
		{"CreateIntercept with an agent token", func() error {
			_, err := l.c.CreateIntercept(agentWithSession, &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "x", Workload: "default/web", Port: 9, Kind: pb.InterceptKind_GLOBAL}})
			return err
		}, "CreateIntercept " + needsUser},
		{"InboundTunnel with an agent token", func() error {
			st, err := l.c.InboundTunnel(agentWithSession)
			if err == nil {
				st.Send(&pb.Frame{Open: &pb.OpenFlow{FlowId: "f"}})
				_, err = st.Recv()
			}
			return err
		}, "InboundTunnel " + needsUser},
		{"WatchSession with an agent token", func() error {
			st, err := l.c.WatchSession(agentWithSession, &pb.WatchSessionRequest{})
			if err == nil {
				_, err = st.Recv()
			}
			return err
		}, "WatchSession " + needsUser},
	} {
		t.Run(tc.name, func(t *testing.T) { wantRefusal(t, tc.name, tc.call(), codes.PermissionDenied, tc.msg) })
	}
}

// An agent gets routes and opens flows only for workloads it is bound to
// (verb serve on workloads.tether.dev), only on ports the intercept covers.
func TestAgentBindingsAndPorts(t *testing.T) {
	l := newGRPCLab(t, testPolicy)
	alice := l.arrive(t, "alice")
	global := l.create(t, alice, &pb.InterceptSpec{Name: "g", Workload: "default/web", Port: 8080, Kind: pb.InterceptKind_GLOBAL})
	l.create(t, alice, &pb.InterceptSpec{Name: "db", Workload: "default/db", Port: 5432, Kind: pb.InterceptKind_GLOBAL})

	_, err := l.watchAgent(as("t-db-agent"), "default/web", 8080)
	wantRefusal(t, "WatchAgent of an unbound workload", err, codes.PermissionDenied,
		`agent db-agent may not serve default/web: user "db-agent" may not serve workloads.tether.dev "web" in namespace "default"`)
	_, err = l.watchAgent(as("t-web-agent"), "default/db", 5432)
	wantRefusal(t, "WatchAgent of another workload", err, codes.PermissionDenied, `may not serve workloads.tether.dev "db"`)
	_, err = l.watchAgent(as("t-web-agent"), "default/web")
	wantRefusal(t, "WatchAgent without ports", err, codes.InvalidArgument, "ports")

	routes, err := l.watchAgent(as("t-web-agent"), "default/web", 8080)
	if err != nil || len(routes.Intercepts) != 1 || routes.Intercepts[0].Id != global.Id {
		t.Fatalf("bound agent's routes: %v, %v", routes, err)
	}
	// Routes hold only intercepts that cover the agent's ports.
	if routes, err := l.watchAgent(as("t-web-agent"), "default/web", 9090); err != nil || len(routes.Intercepts) != 0 {
		t.Fatalf("routes of port 9090: %v, %v", routes, err)
	}

	err = l.refusedFlow(as("t-db-agent"), global.Id, 8080)
	wantRefusal(t, "AgentTunnel by an unbound agent", err, codes.PermissionDenied, `may not serve workloads.tether.dev "web"`)
	err = l.refusedFlow(as("t-web-agent"), global.Id, 22)
	wantRefusal(t, "AgentTunnel on an uncovered port", err, codes.PermissionDenied, "does not cover port 22", "[8080]")
}

// A replace intercept covers its --port, its --to-port ports and the ports
// the workload's agents declared when it was created; nothing else, not
// even a port an agent declares later. Covering nothing, it is refused.
func TestReplaceCoversDeclaredPorts(t *testing.T) {
	l := newGRPCLab(t, testPolicy)
	alice := l.arrive(t, "alice")
	replace := func(name string, port uint32, ports ...uint32) *pb.InterceptSpec {
		return &pb.InterceptSpec{Name: name, Workload: "default/web", Port: port, Kind: pb.InterceptKind_REPLACE, Ports: ports}
	}
	_, err := l.c.CreateIntercept(alice, &pb.CreateInterceptRequest{Spec: replace("none", 0)})
	wantRefusal(t, "replace before any agent, no ports", err, codes.FailedPrecondition, "covers no port", "--port or --to-port")
	early := l.create(t, alice, replace("early", 8080, 9090))
	if got := early.Ports; len(got) != 2 || got[0] != 8080 || got[1] != 9090 {
		t.Fatalf("replace before any agent covers %v, want [8080 9090]", got)
	}
	l.c.RemoveIntercept(alice, &pb.RemoveInterceptRequest{Name: "early"})

	ctx, cancel := context.WithCancel(as("t-web-agent"))
	defer cancel()
	for _, p := range []uint32{8080, 9100} {
		if _, err := l.watchAgent(ctx, "default/web", p); err != nil {
			t.Fatal(err)
		}
	}
	info := l.create(t, alice, replace("r", 0, 9090))
	if got := info.Ports; len(got) != 3 || got[0] != 8080 || got[1] != 9090 || got[2] != 9100 {
		t.Fatalf("replace covers %v, want [8080 9090 9100]", got)
	}
	// An agent that declares 22 afterwards does not widen it.
	if routes, err := l.watchAgent(ctx, "default/web", 22); err != nil || len(routes.Intercepts) != 0 {
		t.Fatalf("routes of a port declared later: %v, %v", routes, err)
	}
	err = l.refusedFlow(as("t-web-agent"), info.Id, 22)
	wantRefusal(t, "flow on a port declared after creation", err, codes.PermissionDenied, "does not cover port 22")
}

// InboundTunnel serves a flow only to the session that owns its
// intercept; the owner still gets it afterwards.
func TestInboundTunnelOnlyForTheOwner(t *testing.T) {
	l := newGRPCLab(t, testPolicy)
	alice, bob := l.arrive(t, "alice"), l.arrive(t, "bob")
	info := l.create(t, alice, &pb.InterceptSpec{Name: "g", Workload: "default/web", Port: 8080, Kind: pb.InterceptKind_GLOBAL})
	watch, err := l.c.WatchSession(alice, &pb.WatchSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	watch.Recv() // the intercepts
	agent, _ := l.openFlow(as("t-web-agent"), info.Id, 8080)
	ev, err := nextDial(watch)
	if err != nil || ev.Dial.Port != 8080 {
		t.Fatalf("alice's dial: %v, %v", ev, err)
	}

	claim := func(ctx context.Context) (grpc.BidiStreamingClient[pb.Frame, pb.Frame], *pb.Frame, error) {
		st, err := l.c.InboundTunnel(ctx)
		if err != nil {
			return nil, nil, err
		}
		st.Send(&pb.Frame{Open: &pb.OpenFlow{FlowId: ev.Dial.FlowId}})
		f, err := st.Recv()
		return st, f, err
	}
	_, _, err = claim(bob)
	wantRefusal(t, "bob picks up alice's flow", err, codes.PermissionDenied, "belongs to another session")
	st, f, err := claim(alice)
	if err != nil || f.Opened.GetStatus() != pb.OpenStatus_OPEN_OK {
		t.Fatalf("alice's claim: %v, %v", f, err)
	}
	_, _, err = claim(alice)
	wantRefusal(t, "a second claim", err, codes.AlreadyExists)
	st.Send(&pb.Frame{Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_OK}})
	if f, err := agent.Recv(); err != nil || f.Opened.GetStatus() != pb.OpenStatus_OPEN_OK {
		t.Fatalf("the agent's answer: %v, %v", f, err)
	}
	st.Send(&pb.Frame{Data: []byte("hi")})
	if f, err := agent.Recv(); err != nil || string(f.Data) != "hi" {
		t.Fatalf("relayed: %v, %v", f, err)
	}
}

// Creating an intercept needs create on intercepts.tether.dev in the
// workload's namespace when a policy is set; without one, anyone may.
func TestCreateInterceptNeedsRBAC(t *testing.T) {
	l := newGRPCLab(t, testPolicy)
	carol, alice := l.arrive(t, "carol"), l.arrive(t, "alice")
	spec := func(ns string) *pb.CreateInterceptRequest {
		return &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "g", Workload: ns + "/web", Port: 8080, Kind: pb.InterceptKind_GLOBAL}}
	}
	_, err := l.c.CreateIntercept(carol, spec("default"))
	wantRefusal(t, "carol", err, codes.PermissionDenied, `intercept refused: user "carol" may not create intercepts.tether.dev in namespace "default"`)
	_, err = l.c.CreateIntercept(alice, spec("prod"))
	wantRefusal(t, "alice in prod", err, codes.PermissionDenied, `user "alice" may not create intercepts.tether.dev in namespace "prod"`)
	if _, err := l.c.CreateIntercept(alice, spec("default")); err != nil {
		t.Fatalf("alice in default: %v", err)
	}
	if n := len(l.s.intercepts); n != 1 {
		t.Fatalf("%d intercepts, want 1: refusals left state behind", n)
	}

	open := newGRPCLab(t, "")
	if _, err := open.c.CreateIntercept(open.arrive(t, "carol"), spec("prod")); err != nil {
		t.Fatalf("without a policy: %v", err)
	}
	// Without a policy every agent serves every workload; roles still hold.
	if _, err := open.watchAgent(as("t-db-agent"), "prod/web", 8080); err != nil {
		t.Fatalf("an agent without a policy: %v", err)
	}
	_, err = open.watchAgent(as("t-carol"), "prod/web", 8080)
	wantRefusal(t, "a user without a policy", err, codes.PermissionDenied, "needs the agent role")
}

// Leaving by name touches only the caller's intercepts; revoking needs RBAC.
func TestLeaveAndRevokeOnlyOwnWithoutRBAC(t *testing.T) {
	l := newGRPCLab(t, testPolicy)
	alice, bob := l.arrive(t, "alice"), l.arrive(t, "bob")
	info := l.create(t, alice, &pb.InterceptSpec{Name: "a", Workload: "default/web", Port: 8080, Kind: pb.InterceptKind_GLOBAL})
	_, err := l.c.RemoveIntercept(bob, &pb.RemoveInterceptRequest{Name: "a"})
	wantRefusal(t, "bob leaves alice's intercept by name", err, codes.NotFound, `you have no intercept named "a"`)
	_, err = l.c.RevokeIntercept(bob, &pb.RevokeInterceptRequest{Id: info.Id})
	wantRefusal(t, "bob revokes", err, codes.PermissionDenied, `user "bob" may not get or update configmaps "traffic-manager"`)
	if x := l.s.intercepts[info.Id]; x == nil || x.state != StateActive {
		t.Fatalf("alice's intercept after bob's attempts: %v", x)
	}
}

// rbac.policyFile without auth.tokenFile is refused at start: RBAC would
// judge names that clients claim.
func TestPolicyNeedsTokens(t *testing.T) {
	p, err := rbac.ParsePolicy(strings.NewReader(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Authorizer: p, Log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "rbac.policyFile") || !strings.Contains(err.Error(), "auth.tokenFile") {
		t.Fatalf("policy without tokens: %v", err)
	}
}

// A session has one watch stream: a new one ends the old one, which then
// gets no dials; a dial whose flow no longer waits is dropped, not sent.
func TestWatchSessionReplacedAndStaleDialsDropped(t *testing.T) {
	l := newGRPCLab(t, testPolicy)
	alice := l.arrive(t, "alice")
	octx, cancel := context.WithTimeout(alice, 5*time.Second)
	defer cancel()
	old, err := l.c.WatchSession(octx, &pb.WatchSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	old.Recv()
	// A dial for a flow the agent gave up on, queued while no stream
	// would have taken it.
	sess := l.s.sessionsByUser("alice")
	sess.dials <- &pb.InboundDial{FlowId: "gone", InterceptId: "x", Port: 8080}

	cur, err := l.c.WatchSession(alice, &pb.WatchSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Recv()
	for {
		ev, err := old.Recv()
		if ev.GetDial() != nil {
			t.Fatalf("a dial whose flow no longer waits was sent: %v", ev.Dial)
		}
		if err != nil {
			wantRefusal(t, "the replaced stream", err, codes.Aborted, "replaced by a newer WatchSession stream")
			break
		}
	}
	info := l.create(t, alice, &pb.InterceptSpec{Name: "g", Workload: "default/web", Port: 8080, Kind: pb.InterceptKind_GLOBAL})
	if ev, err := cur.Recv(); err != nil || len(ev.Intercepts) != 1 {
		t.Fatalf("change on the current stream: %v, %v", ev, err)
	}
	l.openFlow(as("t-web-agent"), info.Id, 8080)
	ev, err := nextDial(cur)
	if err != nil || ev.Dial.FlowId == "gone" {
		t.Fatalf("the current stream's next dial: %v, %v (the stale one must be dropped)", ev, err)
	}
}

// The agents map forgets a workload when its last agent leaves.
func TestAgentsMapDropsLeftWorkloads(t *testing.T) {
	l := newGRPCLab(t, testPolicy)
	ctx, cancel := context.WithCancel(as("t-web-agent"))
	for _, p := range []uint32{8080, 9090} {
		if _, err := l.watchAgent(ctx, "default/web", p); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.s.mu.Lock()
		n := len(l.s.agents)
		l.s.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents map keeps %d workloads after their agents left", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sessionsByUser returns user's session (tests have one per user).
func (s *Server) sessionsByUser(user string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		if sess.user == user {
			return sess
		}
	}
	return nil
}

// nextDial skips a watch stream's intercept events up to its next dial.
func nextDial(watch grpc.ServerStreamingClient[pb.SessionEvent]) (*pb.SessionEvent, error) {
	for {
		ev, err := watch.Recv()
		if err != nil || ev.Dial != nil {
			return ev, err
		}
	}
}

// TestSessionNeedsItsOwnersToken: a session's id and secret do not let
// another user act as its owner, neither on a call nor to resume it.
func TestSessionNeedsItsOwnersToken(t *testing.T) {
	l := newGRPCLab(t, testPolicy)
	resp, err := l.c.Arrive(as("t-alice"), &pb.ArriveRequest{User: "alice", DaemonInstance: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	bobAsAlice := as("t-bob", resp.SessionId, resp.SessionSecret)
	want := "session " + resp.SessionId + " belongs to user alice; this token is user bob's"
	_, err = l.c.ListIntercepts(bobAsAlice, &pb.ListInterceptsRequest{})
	wantRefusal(t, "ListIntercepts with bob's token", err, codes.PermissionDenied, want)
	_, err = l.c.Arrive(as("t-bob"), &pb.ArriveRequest{User: "bob", DaemonInstance: "d2", ResumeSessionId: resp.SessionId, ResumeSessionSecret: resp.SessionSecret})
	wantRefusal(t, "resume with bob's token", err, codes.PermissionDenied, want)
	// alice's own calls and resume still work.
	if _, err := l.c.ListIntercepts(as("t-alice", resp.SessionId, resp.SessionSecret), &pb.ListInterceptsRequest{}); err != nil {
		t.Fatalf("alice's own call: %v", err)
	}
	again, err := l.c.Arrive(as("t-alice"), &pb.ArriveRequest{User: "alice", DaemonInstance: "d1", ResumeSessionId: resp.SessionId, ResumeSessionSecret: resp.SessionSecret})
	if err != nil || !again.Resumed {
		t.Fatalf("alice's resume: %v %v", again, err)
	}
}

// refusingAuthn is an Authenticator whose authority refuses every token
// with a reason, as the API server's TokenReview does.
type refusingAuthn struct{ err error }

func (a refusingAuthn) AuthenticateToken(context.Context, string) (Identity, bool, error) {
	return Identity{}, false, a.err
}

// TestAuthenticatorRefusalSaysWhy: a refusal by the Authenticator reaches
// the caller as Unauthenticated with the authority's reason; a token it
// merely does not know gets the plain refusal.
func TestAuthenticatorRefusalSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		authn Authenticator
		want  string
	}{
		{"reason", refusingAuthn{errors.New("token has been invalidated")}, "the traffic manager refused these credentials: token has been invalidated"},
		{"unknown", Tokens{"t-alice": {User: "alice"}}, "the traffic manager does not know this token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startGRPC(t, Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Authenticator: tc.authn})
			_, err := m.client.Arrive(as("t-mallory"), &pb.ArriveRequest{User: "mallory", Host: "h"})
			if status.Code(err) != codes.Unauthenticated || status.Convert(err).Message() != tc.want {
				t.Fatalf("Arrive = %v, want Unauthenticated %q", err, tc.want)
			}
		})
	}
}

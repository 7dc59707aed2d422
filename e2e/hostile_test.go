package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/internal/netlab"
	"github.com/tether-dev/tether/manager"
	pb "github.com/tether-dev/tether/rpc/manager"
)

// secretPort is a private server on alice's loopback that no intercept of
// hers covers: nobody may reach it through Tether.
const secretPort = 7777

// serveSecret runs alice's private server and counts the requests it got.
func (tm *team) serveSecret() *atomic.Int64 {
	tm.t.Helper()
	var hits atomic.Int64
	ln, err := tm.lab.Listen(tm.alice.ns, "tcp", fmt.Sprintf("127.0.0.1:%d", secretPort))
	if err != nil {
		tm.t.Fatal(err)
	}
	tm.stops = append(tm.stops, netlab.ServeHTTP(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintln(w, "alice's secret")
	})))
	return &hits
}

// replaceForAlice gives alice the intercept, --replace --port 8080
// --to 7000, and returns its id once the agent routes to her.
func (tm *team) replaceForAlice() string {
	tm.t.Helper()
	if out, err := tm.intercept(tm.alice, "rep", "--replace"); err != nil {
		tm.t.Fatalf("alice's replace intercept: %v\n%s", err, out)
	}
	tm.expectRoutes(map[string]string{"": "dev alice"})
	for _, r := range tm.list(tm.alice) {
		if r["name"] == "rep" {
			id, _ := r["id"].(string)
			return id
		}
	}
	tm.t.Fatal("alice's intercept is not listed")
	return ""
}

// hostile is a client that speaks the manager's gRPC API itself, from
// namespace ns, with whatever tokens it holds.
type hostile struct {
	t testing.TB
	c pb.ManagerClient
}

func (tm *team) hostileClient(ns string) *hostile {
	tm.t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+tm.mgrAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return tm.lab.DialContext(ctx, ns, "tcp", addr)
		}))
	if err != nil {
		tm.t.Fatal(err)
	}
	tm.t.Cleanup(func() { cc.Close() })
	return &hostile{t: tm.t, c: pb.NewManagerClient(cc)}
}

// with is a context carrying token and, when given, session credentials;
// it ends with the test.
func (h *hostile) with(token string, session ...string) context.Context {
	kv := []string{"authorization", "Bearer " + token}
	if len(session) == 2 {
		kv = append(kv, manager.MDSession, session[0], manager.MDSecret, session[1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	h.t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// arrive opens a session with token and returns the context of its calls.
func (h *hostile) arrive(token string) context.Context {
	h.t.Helper()
	resp, err := h.c.Arrive(h.with(token), &pb.ArriveRequest{User: "mallory", Host: "hostile"})
	if err != nil {
		h.t.Fatalf("arrive with %s: %v", token, err)
	}
	return h.with(token, resp.SessionId, resp.SessionSecret)
}

// watchAgent is WatchAgent's first answer.
func (h *hostile) watchAgent(ctx context.Context, workload string, port uint32) error {
	st, err := h.c.WatchAgent(ctx, &pb.WatchAgentRequest{Workload: workload, Ports: []uint32{port}})
	if err == nil {
		_, err = st.Recv()
	}
	return err
}

// openFlow opens an AgentTunnel flow and returns the stream and its
// refusal, if any. A flow that waits for its daemon has no answer yet.
func (h *hostile) openFlow(ctx context.Context, id string, port uint32) (grpc.BidiStreamingClient[pb.Frame, pb.Frame], error) {
	st, err := h.c.AgentTunnel(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&pb.Frame{Open: &pb.OpenFlow{Protocol: pb.Protocol_TCP, InterceptId: id, Source: "198.18.3.66:4444", Port: port}}); err != nil {
		_, err = st.Recv()
		return nil, err
	}
	return st, nil
}

// refusedFlow is the answer to an open the manager refuses at once.
func (h *hostile) refusedFlow(ctx context.Context, id string, port uint32) error {
	st, err := h.openFlow(ctx, id, port)
	if err == nil {
		_, err = st.Recv()
	}
	return err
}

// claim is InboundTunnel's answer to a claim of flow.
func (h *hostile) claim(ctx context.Context, flow string) (grpc.BidiStreamingClient[pb.Frame, pb.Frame], error) {
	st, err := h.c.InboundTunnel(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&pb.Frame{Open: &pb.OpenFlow{FlowId: flow}}); err != nil {
		_, err = st.Recv()
		return nil, err
	}
	if _, err := st.Recv(); err != nil {
		return nil, err
	}
	return st, nil
}

// TestHostileClient: with valid tokens, a client that speaks the manager's
// API directly tries every cross-session action against alice's
// `--replace --port 8080` intercept; each is refused with the right code,
// her private loopback server is never reached, and her intercept keeps
// getting its traffic through the real agent.
func TestHostileClient(t *testing.T) {
	tm := newTeam(t)
	secret := tm.serveSecret()
	aliceID := tm.replaceForAlice()
	h := tm.hostileClient(tm.bob.ns)
	bob, dave := h.arrive("t-bob"), h.arrive("t-dave")

	// Another session's inbound flow: carol (also a client of h's) has an
	// intercept on default/api; a flow for it waits for her daemon.
	carol := h.arrive("t-carol")
	if _, err := h.c.CreateIntercept(carol, &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "c", Workload: "default/api", Port: 80, Kind: pb.InterceptKind_GLOBAL}}); err != nil {
		t.Fatalf("carol's intercept: %v", err)
	}
	carolWatch, err := h.c.WatchSession(carol, &pb.WatchSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var carolID string
	for carolID == "" {
		ev, err := carolWatch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range ev.Intercepts {
			carolID = x.Id
		}
	}
	if _, err := h.openFlow(h.with("t-agent"), carolID, 80); err != nil {
		t.Fatal(err)
	}
	var flow string
	for flow == "" {
		ev, err := carolWatch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		flow = ev.GetDial().GetFlowId()
	}

	for _, tc := range []struct {
		name string
		code codes.Code
		msg  string
		call func() error
	}{
		{"WatchAgent with bob's user token", codes.PermissionDenied, "WatchAgent needs the agent role",
			func() error { return h.watchAgent(h.with("t-bob"), workload, agentPort) }},
		{"AgentTunnel with bob's user token", codes.PermissionDenied, "AgentTunnel needs the agent role",
			func() error { return h.refusedFlow(h.with("t-bob"), aliceID, agentPort) }},
		{"Arrive with the agent's token", codes.PermissionDenied, "Arrive needs the user role",
			func() error { _, err := h.c.Arrive(h.with("t-agent"), &pb.ArriveRequest{User: "agent"}); return err }},
		{"WatchAgent by an agent bound to nothing", codes.PermissionDenied, `user "rogue" may not serve workloads.tether.dev "web" in namespace "default"`,
			func() error { return h.watchAgent(h.with("t-rogue"), workload, agentPort) }},
		{"AgentTunnel by an agent bound to nothing", codes.PermissionDenied, `may not serve workloads.tether.dev "web"`,
			func() error { return h.refusedFlow(h.with("t-rogue"), aliceID, agentPort) }},
		{"WatchAgent of a workload the agent is not bound to", codes.PermissionDenied, `may not serve workloads.tether.dev "db"`,
			func() error { return h.watchAgent(h.with("t-agent"), "default/db", 5432) }},
		{"a flow to alice's loopback port 7777", codes.PermissionDenied, "does not cover port 7777",
			func() error { return h.refusedFlow(h.with("t-agent"), aliceID, secretPort) }},
		{"a flow to alice's ssh", codes.PermissionDenied, "does not cover port 22",
			func() error { return h.refusedFlow(h.with("t-agent"), aliceID, 22) }},
		{"bob picks up carol's inbound flow", codes.PermissionDenied, "belongs to another session",
			func() error { _, err := h.claim(bob, flow); return err }},
		{"bob leaves alice's intercept by its name", codes.NotFound, `you have no intercept named "rep"`,
			func() error { _, err := h.c.RemoveIntercept(bob, &pb.RemoveInterceptRequest{Name: "rep"}); return err }},
		{"bob revokes alice's intercept", codes.PermissionDenied, `user "bob" may not get or update configmaps "traffic-manager"`,
			func() error { _, err := h.c.RevokeIntercept(bob, &pb.RevokeInterceptRequest{Id: aliceID}); return err }},
		{"dave creates an intercept without RBAC", codes.PermissionDenied, `user "dave" may not create intercepts.tether.dev in namespace "default"`,
			func() error {
				_, err := h.c.CreateIntercept(dave, &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "d", Workload: "default/other", Port: 80, Kind: pb.InterceptKind_GLOBAL}})
				return err
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("%v; want %v naming %q", err, tc.code, tc.msg)
			}
		})
	}

	// The refusals were no accident: carol, the owner, still gets her flow.
	st, err := h.claim(carol, flow)
	if err != nil {
		t.Fatalf("carol's claim of her own flow: %v", err)
	}
	st.Send(&pb.Frame{Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_REFUSED, Error: "test"}})

	// Alice's intercept works as before, and nothing reached her secret.
	tm.expectRoutes(map[string]string{"": "dev alice", "bob": "dev alice"})
	if st, msg := tm.stateOf(tm.alice, "rep"); st != "ACTIVE" {
		t.Fatalf("alice's intercept: %s %q", st, msg)
	}
	if n := secret.Load(); n != 0 {
		t.Fatalf("alice's private server got %d requests", n)
	}
}

// TestDeveloperCannotBeAnAgent is the CLI finding: bob runs his
// own `tether agent` for alice's workload, on port 7777, first with his
// developer token, then with the real agent's token. Neither reaches
// 127.0.0.1:7777 on alice's laptop through her --replace --port 8080
// intercept.
func TestDeveloperCannotBeAnAgent(t *testing.T) {
	tm := newTeam(t)
	secret := tm.serveSecret()
	tm.replaceForAlice()
	if err := os.WriteFile(filepath.Join(tm.dir, "agent-copy.token"), []byte("t-agent\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		token   string
		wantLog string // what bob's agent says
	}{
		{"bob.token", "WatchAgent needs the agent role (group tether:agents in auth.tokenFile); this token is user bob's"},
		{"agent-copy.token", "route stream from the manager is up"},
	} {
		t.Run(tc.token, func(t *testing.T) {
			listen := fmt.Sprintf("127.0.0.1:%d", 17777+i)
			logPath := filepath.Join(tm.dir, fmt.Sprintf("bob-agent-%d.log", i))
			p, err := tm.lab.Start(tm.bob.ns, logPath, tetherBin, "--log-level", "debug", "agent",
				"--manager", tm.mgrAddr(), "--workload", workload, "--port", fmt.Sprint(secretPort),
				"--app", "127.0.0.1:1", "--listen", listen, "--token-file", filepath.Join(tm.dir, tc.token))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			tm.waitTCP(tm.bob.ns, listen)
			deadline := time.Now().Add(10 * time.Second)
			for {
				b, _ := os.ReadFile(logPath)
				if strings.Contains(string(b), tc.wantLog) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("bob's agent never logged %q:\n%s", tc.wantLog, b)
				}
				time.Sleep(100 * time.Millisecond)
			}
			for range 3 {
				out, _ := tm.run(tm.bob.ns, "curl", "-sS", "--max-time", "5", "http://"+listen+"/")
				if strings.Contains(out, "secret") {
					t.Fatalf("bob read alice's private server: %s", out)
				}
			}
		})
	}
	if n := secret.Load(); n != 0 {
		t.Fatalf("alice's private server got %d requests", n)
	}
	tm.expectRoutes(map[string]string{"": "dev alice"})
}

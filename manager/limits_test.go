package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/internal/netlab"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/wire"
)

// refusedFor asserts err is a ResourceExhausted that names key.
func refusedFor(t *testing.T, err error, key string) {
	t.Helper()
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), key) {
		t.Fatalf("got %v, want ResourceExhausted naming %s", err, key)
	}
}

func (s *Server) sessionsOf(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sess := range s.sessions {
		if sess.user == user {
			n++
		}
	}
	return n
}

func TestSessionsPerUser(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	var first *pb.ArriveResponse
	for i := range DefaultLimits.SessionsPerUser {
		resp, err := s.Arrive(ctx, &pb.ArriveRequest{User: "alice", Host: fmt.Sprint("host", i)})
		if err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
		if first == nil {
			first = resp
		}
	}
	_, err := s.Arrive(ctx, &pb.ArriveRequest{User: "alice", Host: "one-too-many"})
	refusedFor(t, err, "limits.sessionsPerUser")
	if n := s.sessionsOf("alice"); n != DefaultLimits.SessionsPerUser {
		t.Fatalf("alice has %d sessions after the refusal, want %d", n, DefaultLimits.SessionsPerUser)
	}
	if _, err := s.Arrive(ctx, &pb.ArriveRequest{User: "bob"}); err != nil {
		t.Fatalf("another user: %v", err)
	}
	again, err := s.Arrive(ctx, &pb.ArriveRequest{User: "alice", ResumeSessionId: first.SessionId, ResumeSessionSecret: first.SessionSecret})
	if err != nil || !again.Resumed {
		t.Fatalf("resuming at the limit: %v, %v", again, err)
	}
	if _, err := s.Depart(withCreds(first.SessionId, first.SessionSecret), &pb.DepartRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Arrive(ctx, &pb.ArriveRequest{User: "alice"}); err != nil {
		t.Fatalf("after a quit: %v", err)
	}
}

// With auth.tokenFile the limit is per identity: the user name a client
// claims changes nothing.
func TestSessionsPerUserCountsTheTokensIdentity(t *testing.T) {
	s, err := New(Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Log: slog.New(slog.DiscardHandler),
		Authenticator: Tokens{"tok-alice": {User: "alice"}, "tok-bob": {User: "bob"}}, Limits: Limits{SessionsPerUser: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	as := func(token string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(wire.MDAuthorization, "Bearer "+token))
	}
	for i, claim := range []string{"alice", "root"} {
		if _, err := s.Arrive(as("tok-alice"), &pb.ArriveRequest{User: claim}); err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
	}
	_, err = s.Arrive(as("tok-alice"), &pb.ArriveRequest{User: "someone-else"})
	refusedFor(t, err, "limits.sessionsPerUser")
	if !strings.Contains(err.Error(), "alice already has 2 sessions") {
		t.Errorf("refusal %q does not name the identity", err)
	}
	if _, err := s.Arrive(as("tok-bob"), &pb.ArriveRequest{User: "alice"}); err != nil {
		t.Fatalf("bob claiming to be alice: %v", err)
	}
}

func TestInterceptsPerSession(t *testing.T) {
	s, err := New(Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Log: slog.New(slog.DiscardHandler),
		Limits: Limits{InterceptsPerSession: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	alice, bob := arriveAs(t, s, "alice"), arriveAs(t, s, "bob")
	global := func(name string, port uint32) *pb.CreateInterceptRequest {
		return &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: name, Workload: "default/web", Port: port, Kind: pb.InterceptKind_GLOBAL}}
	}
	for i, name := range []string{"a1", "a2"} {
		if _, err := s.CreateIntercept(alice, global(name, uint32(8080+i))); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.CreateIntercept(alice, global("a3", 8082))
	refusedFor(t, err, "limits.interceptsPerSession")
	if got := len(states(t, s, alice)); got != 2 {
		t.Fatalf("%d intercepts after the refusal, want 2", got)
	}
	if _, err := s.CreateIntercept(bob, global("b1", 8083)); err != nil {
		t.Fatalf("another session: %v", err)
	}
	if _, err := s.RemoveIntercept(alice, &pb.RemoveInterceptRequest{Name: "a1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateIntercept(alice, global("a3", 8082)); err != nil {
		t.Fatalf("after leaving one: %v", err)
	}
}

// arriveAs opens a session for user, with user's token of testTokens
// (which development mode ignores).
func arriveAs(t *testing.T, s *Server, user string) context.Context {
	t.Helper()
	resp, err := s.Arrive(withToken(context.Background(), "t-"+user), &pb.ArriveRequest{User: user, Host: user + "-laptop"})
	if err != nil {
		t.Fatal(err)
	}
	return withToken(withCreds(resp.SessionId, resp.SessionSecret), "t-"+user)
}

// An owner who never watches gets the newest notices, told that older
// ones were dropped; nobody else's change.
func TestNoticesPerSessionKeepNewest(t *testing.T) {
	s, err := New(Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Log: slog.New(slog.DiscardHandler),
		Authorizer: allowUsers{"alice": true}, Authenticator: testTokens, Limits: Limits{NoticesPerSession: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	alice, bob, carol := arriveAs(t, s, "alice"), arriveAs(t, s, "bob"), arriveAs(t, s, "carol")
	var ids []string
	for i := range 4 {
		x, err := s.CreateIntercept(bob, &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: fmt.Sprint("b", i), Workload: "default/web", Port: uint32(8080 + i), Kind: pb.InterceptKind_GLOBAL}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, x.Id)
	}
	x, err := s.CreateIntercept(carol, &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "c", Workload: "default/web", Port: 9090, Kind: pb.InterceptKind_GLOBAL}})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, x.Id)
	for _, id := range ids {
		if _, err := s.RevokeIntercept(alice, &pb.RevokeInterceptRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
	}
	bs, _ := s.authenticate(bob)
	cs, _ := s.authenticate(carol)
	s.mu.Lock()
	bobs, carols := append([]string(nil), bs.notices...), append([]string(nil), cs.notices...)
	s.mu.Unlock()
	if len(bobs) != 2 || !strings.Contains(bobs[0], `"b2"`) || !strings.Contains(bobs[1], `"b3"`) {
		t.Fatalf("bob's notices %q, want those of b2 and b3", bobs)
	}
	if !strings.HasPrefix(bobs[0], "(older notices dropped: limits.noticesPerSession is 2)") {
		t.Errorf("bob's oldest notice %q does not say that older ones were dropped", bobs[0])
	}
	if len(carols) != 1 || strings.Contains(carols[0], "dropped") {
		t.Errorf("carol's notices %q, want her one revoke", carols)
	}
}

// flowClient opens flows through m for the session in ctx.
type flowClient struct {
	c   *tunnel.Client
	ctx context.Context
}

func newFlowClient(t *testing.T, m *grpcManager, user string) *flowClient {
	t.Helper()
	c := tunnel.NewClient(m.cc, 2*time.Second)
	t.Cleanup(c.Close)
	return &flowClient{c: c, ctx: m.arrive(t, user)}
}

func (fc *flowClient) open(proto pb.Protocol, dst string) (*tunnel.Flow, error) {
	return fc.c.Open(fc.ctx, proto, netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort(dst))
}

// echo sends msg on f and expects it back; for TCP the echo server
// answers as bytes arrive.
func echo(f *tunnel.Flow, msg string) error {
	if err := f.Send([]byte(msg)); err != nil {
		return err
	}
	var got []byte
	for len(got) < len(msg) {
		b, err := f.Recv()
		if err != nil {
			return err
		}
		got = append(got, b...)
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

func TestTCPFlowsPerSession(t *testing.T) {
	m := startGRPC(t, Config{Limits: Limits{TCPFlowsPerSession: 2}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer netlab.ServeEcho(ln)()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer netlab.ServeUDPEcho(pc)()
	tcpDst, udpDst := ln.Addr().String(), pc.LocalAddr().String()
	alice, bob := newFlowClient(t, m, "alice"), newFlowClient(t, m, "bob")

	var live []*tunnel.Flow
	for range 2 {
		f, err := alice.open(pb.Protocol_TCP, tcpDst)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close(true)
		live = append(live, f)
	}
	_, err = alice.open(pb.Protocol_TCP, tcpDst)
	var oe *tunnel.OpenError
	if !errors.As(err, &oe) || oe.Status != pb.OpenStatus_OPEN_FORBIDDEN || !strings.Contains(oe.Msg, "limits.tcpFlowsPerSession") {
		t.Fatalf("third TCP flow: %v, want a refusal naming limits.tcpFlowsPerSession", err)
	}
	for i, f := range live {
		if err := echo(f, "still here"); err != nil {
			t.Fatalf("flow %d after the refusal: %v", i, err)
		}
	}
	u, err := alice.open(pb.Protocol_UDP, udpDst)
	if err != nil {
		t.Fatalf("UDP at the TCP limit: %v", err)
	}
	defer u.Close(true)
	if err := echo(u, "udp"); err != nil {
		t.Fatal(err)
	}
	b, err := bob.open(pb.Protocol_TCP, tcpDst)
	if err != nil {
		t.Fatalf("another session: %v", err)
	}
	defer b.Close(true)
	if err := echo(b, "bob"); err != nil {
		t.Fatal(err)
	}

	// A flow that ends frees its place (once the manager saw it end).
	live[0].Close(true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := alice.open(pb.Protocol_TCP, tcpDst)
		if err == nil {
			defer f.Close(true)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a place freed by a closed flow was never reused: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// At the limit, a new UDP flow ends the one least recently used, and the
// others, the newest included, keep working.
func TestUDPFlowsPerSessionEvictLeastRecentlyUsed(t *testing.T) {
	m := startGRPC(t, Config{Limits: Limits{UDPFlowsPerSession: 2}})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer netlab.ServeUDPEcho(pc)()
	dst := pc.LocalAddr().String()
	alice, bob := newFlowClient(t, m, "alice"), newFlowClient(t, m, "bob")
	open := func(fc *flowClient, name string) *tunnel.Flow {
		t.Helper()
		f, err := fc.open(pb.Protocol_UDP, dst)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close(true) })
		if err := echo(f, name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return f
	}
	a, b := open(alice, "a"), open(alice, "b")
	other := open(bob, "bob's")
	if err := echo(a, "a again"); err != nil { // b is now the least recently used
		t.Fatal(err)
	}
	c := open(alice, "c")
	if _, err := b.Recv(); err != io.EOF {
		t.Fatalf("the least recently used flow: Recv %v, want io.EOF (ended)", err)
	}
	for name, f := range map[string]*tunnel.Flow{"a": a, "c": c, "bob's": other} {
		if err := echo(f, name+" after eviction"); err != nil {
			t.Fatalf("%s after the eviction: %v", name, err)
		}
	}
}

// Tunnel streams that never carry a flow are bounded too: one per flow
// the limits allow plus idleStreams.
func TestTunnelStreamsPerSession(t *testing.T) {
	m := startGRPC(t, Config{Limits: Limits{TCPFlowsPerSession: 1, UDPFlowsPerSession: 1}})
	alice, bob := m.arrive(t, "alice"), m.arrive(t, "bob")
	sess, err := m.s.authenticate(incoming(t, alice))
	if err != nil {
		t.Fatal(err)
	}
	streams := func() int {
		sess.flows.mu.Lock()
		defer sess.flows.mu.Unlock()
		return sess.flows.streams
	}
	limit := 1 + 1 + idleStreams
	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	open := func(ctx context.Context) pb.Manager_TunnelClient {
		t.Helper()
		ctx, cancel := context.WithCancel(ctx)
		cancels = append(cancels, cancel)
		st, err := m.client.Tunnel(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	for range limit {
		open(alice)
	}
	for deadline := time.Now().Add(5 * time.Second); streams() < limit; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d idle streams reached the manager", streams(), limit)
		}
	}
	_, err = open(alice).Recv()
	refusedFor(t, err, "limits.tcpFlowsPerSession + limits.udpFlowsPerSession")
	// bob's session has its own streams.
	fc := &flowClient{c: tunnel.NewClient(m.cc, 2*time.Second), ctx: bob}
	defer fc.c.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer netlab.ServeEcho(ln)()
	f, err := fc.open(pb.Protocol_TCP, ln.Addr().String())
	if err != nil {
		t.Fatalf("another session: %v", err)
	}
	defer f.Close(true)
	if err := echo(f, "bob"); err != nil {
		t.Fatal(err)
	}
	// An idle stream that goes frees its place.
	cancels[0]()
	for deadline := time.Now().Add(5 * time.Second); streams() >= limit; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a closed stream never freed its place")
		}
	}
}

// incoming turns a client context's credentials into a server's.
func incoming(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok {
		t.Fatal("no credentials")
	}
	return metadata.NewIncomingContext(context.Background(), md)
}

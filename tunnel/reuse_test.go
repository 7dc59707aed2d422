package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc/connectivity"

	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
)

// echoFlow sends msg on a new flow to dst, half-closes, reads the echo to
// the manager's EOF and ends the flow cleanly.
func echoFlow(t *testing.T, h *harness, ctx context.Context, dst, msg string) {
	t.Helper()
	f, err := h.client.Open(ctx, pb.Protocol_TCP, netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort(dst))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := f.Send([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := f.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got := recvAll(t, f)
	f.Close(false)
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
}

// waitRunning waits until the manager runs n Tunnel streams.
func waitRunning(t *testing.T, h *harness, n int32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.running.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("manager runs %d Tunnel streams, want %d", h.running.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Flows that end cleanly, or are refused, leave their stream for the next
// flow; a reset one does not.
func TestStreamReuse(t *testing.T) {
	h := newHarness(t)
	echo := echoServer(t)
	refused := refusedAddr(t)

	for i := range 20 {
		ctx, cancel := context.WithCancel(h.ctx)
		echoFlow(t, h, ctx, echo, fmt.Sprintf("flow %d", i))
		cancel() // the flow's context ends after its clean end: the stream stays
	}
	if _, err := h.open(t, pb.Protocol_TCP, refused); err == nil {
		t.Fatal("open of a closed port succeeded")
	}
	echoFlow(t, h, h.ctx, echo, "after a refusal")
	if n := h.started.Load(); n != 1 {
		t.Fatalf("22 sequential flows used %d streams, want 1", n)
	}

	f, err := h.open(t, pb.Protocol_TCP, echo)
	if err != nil {
		t.Fatal(err)
	}
	f.Close(true)
	echoFlow(t, h, h.ctx, echo, "after a reset")
	if n := h.started.Load(); n != 2 {
		t.Fatalf("a flow after a reset one used stream %d, want a new one (2)", n)
	}
	waitRunning(t, h, 1)
}

// The pool keeps a bounded number of idle streams, for a bounded time.
func TestIdleStreamsBounded(t *testing.T) {
	// Long enough that a loaded machine closes all the flows before the
	// first idle stream expires, or the pool is never seen full.
	defer tunnel.SetIdleStreamTimeout(2 * time.Second)()
	h := newHarness(t)
	echo := echoServer(t)
	const n = 40
	flows := make([]*tunnel.Flow, n)
	for i := range flows {
		f, err := h.open(t, pb.Protocol_TCP, echo)
		if err != nil {
			t.Fatal(err)
		}
		flows[i] = f
	}
	for _, f := range flows {
		f.CloseWrite()
		recvAll(t, f)
		f.Close(false)
	}
	waitRunning(t, h, int32(tunnel.MaxIdleStreams()))
	waitRunning(t, h, 0)
}

// A stream that died while idle (here: the manager's gRPC server
// restarted) costs the next flow nothing but a retry.
func TestDeadIdleStreamRetried(t *testing.T) {
	h := newHarness(t)
	echo := echoServer(t)
	echoFlow(t, h, h.ctx, echo, "before")
	waitRunning(t, h, 1)

	addr := h.cc.Target()
	h.srv.Stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	h.srv = h.newServer()
	go h.srv.Serve(ln)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.cc.Connect()
	for st := h.cc.GetState(); st != connectivity.Ready; st = h.cc.GetState() {
		if !h.cc.WaitForStateChange(ctx, st) {
			t.Fatal("client did not reconnect")
		}
	}
	echoFlow(t, h, h.ctx, echo, "after")
	if n := h.started.Load(); n != 2 {
		t.Fatalf("manager started %d streams, want 2", n)
	}
}

// A manager that ends a session ends its idle streams too.
func TestIdleStreamEndsWithSession(t *testing.T) {
	h := newHarness(t)
	echoFlow(t, h, h.ctx, echoServer(t), "x")
	waitRunning(t, h, 1)
	if _, err := pb.NewManagerClient(h.cc).Depart(h.ctx, &pb.DepartRequest{}); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, h, 0)
	_, err := h.open(t, pb.Protocol_TCP, echoServer(t))
	var oe *tunnel.OpenError
	if err == nil || errors.As(err, &oe) {
		t.Fatalf("open after the session ended: %v, want a session error", err)
	}
}

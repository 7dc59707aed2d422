package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tether-dev/tether/internal/netlab"
	"github.com/tether-dev/tether/manager"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
)

// harness is a manager on loopback and a tunnel client with a session.
type harness struct {
	client *tunnel.Client
	cc     *grpc.ClientConn
	ctx    context.Context
	mgr    *manager.Server
	srv    *grpc.Server
	// Tunnel streams the manager started, and those still running.
	started, running atomic.Int32
}

func newHarness(t testing.TB, subnets ...string) *harness {
	t.Helper()
	return newHarnessTimeouts(t, 2*time.Second, 2*time.Second, subnets...)
}

// newHarnessTimeouts is newHarness with the manager's dial timeout and the
// client's open timeout.
func newHarnessTimeouts(t testing.TB, dialTimeout, openTimeout time.Duration, subnets ...string) *harness {
	t.Helper()
	if len(subnets) == 0 {
		subnets = []string{"127.0.0.0/8"}
	}
	var pfx []netip.Prefix
	for _, s := range subnets {
		pfx = append(pfx, netip.MustParsePrefix(s))
	}
	log := slog.New(slog.DiscardHandler)
	mgr, err := manager.New(manager.Config{Subnets: pfx, DialTimeout: dialTimeout, UDPIdleTimeout: time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{mgr: mgr}
	h.srv = h.newServer()
	go h.srv.Serve(ln)
	cc, err := grpc.NewClient(ln.Addr().String(), tunnel.DialOptions(nil)...)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := pb.NewManagerClient(cc).Arrive(context.Background(), &pb.ArriveRequest{User: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), manager.MDSession, resp.SessionId, manager.MDSecret, resp.SessionSecret)
	t.Cleanup(func() {
		h.client.Close()
		cc.Close()
		mgr.Shutdown()
		h.srv.Stop()
	})
	h.client, h.cc, h.ctx = tunnel.NewClient(cc, openTimeout), cc, ctx
	return h
}

// newServer is a gRPC server for h.mgr that counts Tunnel streams.
func (h *harness) newServer() *grpc.Server {
	count := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if strings.HasSuffix(info.FullMethod, "/Tunnel") {
			h.started.Add(1)
			h.running.Add(1)
			defer h.running.Add(-1)
		}
		return handler(srv, ss)
	}
	srv := grpc.NewServer(append(tunnel.ServerOptions(tunnel.Keepalive{}), grpc.StreamInterceptor(count))...)
	h.mgr.Register(srv)
	return srv
}

func (h *harness) open(t testing.TB, proto pb.Protocol, dst string) (*tunnel.Flow, error) {
	t.Helper()
	return h.client.Open(h.ctx, proto, netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort(dst))
}

// echoServer copies input to output and half-closes after the client did.
func echoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(netlab.ServeEcho(ln))
	return ln.Addr().String()
}

// recvAll returns what f receives up to the manager's EOF.
func recvAll(t testing.TB, f *tunnel.Flow) []byte {
	t.Helper()
	var got bytes.Buffer
	for {
		b, err := f.Recv()
		if err == io.EOF {
			return got.Bytes()
		}
		if err != nil {
			t.Fatal(err)
		}
		got.Write(b)
	}
}

func TestTCPEchoWithHalfClose(t *testing.T) {
	h := newHarness(t)
	f, err := h.open(t, pb.Protocol_TCP, echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 3<<20)
	rand.Read(want)
	go func() {
		for b := want; len(b) > 0; {
			n := min(len(b), 100_000)
			if err := f.Send(b[:n]); err != nil {
				t.Error(err)
				return
			}
			b = b[n:]
		}
		f.CloseWrite() // the client half-closes and still reads the reply
	}()
	got := recvAll(t, f)
	f.Close(false)
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("echo differs: got %d bytes, want %d", len(got), len(want))
	}
}

func TestOpenFailures(t *testing.T) {
	h := newHarness(t, "127.0.0.0/8")
	for _, tc := range []struct {
		name string
		dst  string
		want pb.OpenStatus
	}{
		{"refused port", refusedAddr(t), pb.OpenStatus_OPEN_REFUSED},
		{"outside the subnets", "198.18.9.9:80", pb.OpenStatus_OPEN_FORBIDDEN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := h.open(t, pb.Protocol_TCP, tc.dst)
			var oe *tunnel.OpenError
			if !errors.As(err, &oe) || oe.Status != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v: a refusal must be prompt", d)
			}
		})
	}
}

func TestResetReachesServerSide(t *testing.T) {
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	f, err := h.open(t, pb.Protocol_TCP, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := <-accepted
	defer c.Close()
	f.Close(true)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, syscall_ECONNRESET) {
		t.Fatalf("server side read %v, want connection reset", err)
	}
}

func TestResetReachesClientSide(t *testing.T) {
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			// Reset only after the first byte, so the dial itself has
			// surely succeeded.
			c.Read(make([]byte, 1))
			c.(*net.TCPConn).SetLinger(0)
			c.Close() // RST
		}
	}()
	f, err := h.open(t, pb.Protocol_TCP, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(true)
	if err := f.Send([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Recv(); err == nil || err == io.EOF {
		t.Fatalf("Recv = %v, want a reset error", err)
	}
}

func TestUDPEchoAndIdleEnd(t *testing.T) {
	h := newHarness(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer netlab.ServeUDPEcho(pc)()

	f, err := h.open(t, pb.Protocol_UDP, pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(true)
	for _, msg := range []string{"one", "two", "three"} {
		if err := f.Send([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		b, err := f.Recv()
		if err != nil || string(b) != msg {
			t.Fatalf("Recv = %q, %v; want %q", b, err, msg)
		}
	}
	// The harness's idle timeout is 1s: the manager ends the flow.
	if _, err := f.Recv(); err != io.EOF {
		t.Fatalf("after idle: %v, want io.EOF", err)
	}
}

func TestSessionCredentialsRequired(t *testing.T) {
	h := newHarness(t)
	for name, ctx := range map[string]context.Context{
		"none":         context.Background(),
		"wrong secret": metadata.AppendToOutgoingContext(context.Background(), manager.MDSession, "x", manager.MDSecret, "y"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := h.client.Open(ctx, pb.Protocol_TCP, netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort(echoServer(t)))
			if err == nil {
				t.Fatal("open without valid credentials succeeded")
			}
		})
	}
}

// refusedAddr is a loopback address where nothing listens: a port that was
// just free.
func refusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

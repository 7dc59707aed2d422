package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/platform"
	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
)

// runDaemon runs a daemon on a socket of its own until the test ends and
// returns a client of its control API. It never gets as far as a device:
// every manager these tests use is unreachable, silent or refusing.
func runDaemon(t *testing.T, cfg Config) (*Daemon, pb.DaemonClient) {
	t.Helper()
	if cfg.Socket == "" {
		cfg.Socket = filepath.Join(t.TempDir(), "daemon.sock")
	}
	cfg.Log = slog.New(slog.DiscardHandler)
	cfg.NewRouter = func(string, *slog.Logger) (platform.Router, error) { return &platform.FakeRouter{}, nil }
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	cc, err := Dial(cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return within 20s of its context ending")
		}
	})
	return d, pb.NewDaemonClient(cc)
}

// quickStatus is Status with a deadline far shorter than any connect.
func quickStatus(t *testing.T, c pb.DaemonClient) *pb.StatusResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		t.Fatalf("status while a connect runs: %v", err)
	}
	return st
}

// waitStatus polls Status until ok holds, for up to 10s.
func waitStatus(t *testing.T, c pb.DaemonClient, what string, ok func(*pb.StatusResponse) bool) *pb.StatusResponse {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := quickStatus(t, c)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed %s: %v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// silentManager accepts connections and never answers: a manager that
// hangs, or an address that swallows packets, as gRPC sees it.
func silentManager(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// closedAddr is a loopback address where nothing listens: connects are
// refused at once, as with no network.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestStatusDuringSlowConnect: control calls answer while a connect waits
// for a manager that does not answer, and quit cancels the connect.
func TestStatusDuringSlowConnect(t *testing.T) {
	_, c := runDaemon(t, Config{})
	mgr := silentManager(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Connect(context.Background(), &pb.ConnectRequest{Manager: mgr})
		errc <- err
	}()
	st := waitStatus(t, c, "connecting", func(st *pb.StatusResponse) bool { return st.Link == "connecting" })
	if st.Connected || st.Manager != mgr {
		t.Fatalf("status while connecting: %v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.Quit(ctx, &pb.QuitRequest{}); err != nil {
		t.Fatalf("quit while a connect runs: %v", err)
	}
	select {
	case err := <-errc:
		if status.Code(err) != codes.Canceled || !strings.Contains(err.Error(), "tether quit") {
			t.Fatalf("connect after quit: %v, want Canceled naming tether quit", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("quit did not end the connect within 5s")
	}
	if st := quickStatus(t, c); st.Connected || st.Link != "" || st.Reason != "quit by the user" {
		t.Fatalf("status after quit: %v", st)
	}
}

// writeCache leaves a session cache as a daemon that stopped leaves it.
func writeCache(t *testing.T, socket, mgr string) {
	t.Helper()
	b, _ := json.Marshal(cachedCreds{Manager: mgr, ID: "s1", Secret: "secret", User: "alice"})
	if err := os.WriteFile(socket+".session", b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestResumeRetries: a daemon that starts with a cached session and no
// way to the manager keeps trying with backoff, shows "resuming", and stops
// when the user quits, forgetting the session.
func TestResumeRetries(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "daemon.sock")
	mgr := closedAddr(t)
	writeCache(t, socket, mgr)
	var mu sync.Mutex // guards delays
	var delays []int
	_, c := runDaemon(t, Config{Socket: socket, resumeDelay: func(n int) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		delays = append(delays, n)
		return 20 * time.Millisecond
	}})
	st := waitStatus(t, c, "5 failed attempts", func(st *pb.StatusResponse) bool { return st.ResumeAttempts >= 5 })
	if !st.Resuming || st.Link != "resuming" || st.Manager != mgr || st.Connected || !strings.Contains(st.Reason, "cannot reach the traffic manager") {
		t.Fatalf("status while resuming: %v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.Quit(ctx, &pb.QuitRequest{}); err != nil {
		t.Fatal(err)
	}
	if st := quickStatus(t, c); st.Resuming || st.Link != "" || st.Reason != "quit by the user" {
		t.Fatalf("status after quit: %v", st)
	}
	if _, err := os.Stat(socket + ".session"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the session cache is kept after quit: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, n := range delays[:5] {
		if n != i {
			t.Fatalf("backoff steps %v, want 0, 1, 2, ...", delays)
		}
	}
}

// TestResumeStopsOnRefusal: a manager that answers and refuses ends the
// retries; only a manager out of reach is worth waiting for.
func TestResumeStopsOnRefusal(t *testing.T) {
	m := newFakeManager(t)
	m.refuseWith(status.Error(codes.PermissionDenied, "no such user"))
	socket := filepath.Join(t.TempDir(), "daemon.sock")
	writeCache(t, socket, m.addr)
	_, c := runDaemon(t, Config{Socket: socket, resumeDelay: func(int) time.Duration { return 20 * time.Millisecond }})
	st := waitStatus(t, c, "the refusal", func(st *pb.StatusResponse) bool { return !st.Resuming && st.Reason != "" })
	if !strings.Contains(st.Reason, "no such user") || st.Link != "" {
		t.Fatalf("status after a refused resume: %v", st)
	}
	if n := m.arrivals.Load(); n != 1 {
		t.Fatalf("%d arrivals, want 1", n)
	}
}

var _ pbm.ManagerServer = (*fakeManager)(nil)

// TestConnectRefusesRogueRoutes: a manager's subnets that would redirect
// the host's traffic fail connect with one line, before any device or
// router exists.
func TestConnectRefusesRogueRoutes(t *testing.T) {
	m := newFakeManager(t, "0.0.0.0/1", "128.0.0.0/1")
	routers := 0
	d, err := New(Config{Socket: filepath.Join(t.TempDir(), "daemon.sock"), Log: slog.New(slog.DiscardHandler),
		NewRouter: func(string, *slog.Logger) (platform.Router, error) { routers++; return &platform.FakeRouter{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.ln.Close()
	_, err = d.Connect(context.Background(), &pb.ConnectRequest{Manager: m.addr})
	if err == nil || !strings.Contains(err.Error(), "0.0.0.0/1, wider than /8 (routes.minPrefixLength)") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("connect: %v, want one line refusing 0.0.0.0/1", err)
	}
	if routers != 0 || d.current() != nil {
		t.Fatalf("a refused connect made %d routers, session %v", routers, d.current())
	}
	if st, _ := d.Status(context.Background(), &pb.StatusRequest{}); st.Connected || !strings.Contains(st.Reason, "0.0.0.0/1") {
		t.Fatalf("status after the refusal: %v", st)
	}
}

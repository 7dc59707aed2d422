package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/daemon"
	"github.com/tether-dev/tether/internal/netlab"
	pb "github.com/tether-dev/tether/rpc/daemon"
)

// TestResumeWithoutNetwork: a daemon that starts with a cached session
// and no network retries the resume, says "resuming", and resumes the same
// session once the network is back.
func TestResumeWithoutNetwork(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := e.status()["session_id"]
	if err := e.daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := e.run(e.lab.Client, "ip", "link", "set", "cl0", "down"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e.startDaemon()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := e.status()
		if n, _ := st["resume_attempts"].(float64); n >= 3 {
			if st["resuming"] != true || st["link"] != "resuming" || st["connected"] != false || st["manager"] != e.mgrAddr() {
				t.Fatalf("status while resuming: %v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 3 resume attempts within 20s: %v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, _ := e.tether("--no-activity", "status"); !strings.Contains(out, "resuming the session with "+e.mgrAddr()) {
		t.Errorf("status does not say it is resuming:\n%s", out)
	}
	if out, err := e.run(e.lab.Client, "ip", "link", "set", "cl0", "up"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e.waitResumedWithin(20 * time.Second)
	st := e.status()
	if st["session_id"] != before || st["resuming"] != false {
		t.Fatalf("after the network came back: %v, want session %v", st, before)
	}
	if out, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "10", "http://"+e.podAddr(portHTTP)+"/"); err != nil {
		t.Fatalf("curl after resuming: %v\n%s", err, out)
	}
}

// waitResumedWithin is waitResumed with a deadline of its own: a resume
// with backoff may take longer than a restart.
func (e *env) waitResumedWithin(d time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for e.status()["connected"] != true {
		if time.Now().After(deadline) {
			e.t.Fatalf("the daemon did not resume within %v", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStatusDuringSlowConnect: while connect waits for a manager that
// accepts and never answers, status answers at once, and quit ends the
// connect.
func TestStatusDuringSlowConnect(t *testing.T) {
	e := newEnv(t, envOptions{noDaemon: true})
	e.startDaemon()
	addr := fmt.Sprintf("%s:%d", e.lab.MgrIP, 8095)
	ln, err := e.lab.Listen(e.lab.Mgr, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// Reads what the client sends and never answers: no HTTP/2 settings,
	// so gRPC waits as for an address that swallows packets.
	e.stops = append(e.stops, netlab.ServeConns(ln, func(c net.Conn) { io.Copy(io.Discard, c) }))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connect := e.lab.Command(ctx, e.lab.Client, tetherBin, "--socket", e.socket, "connect", "--manager", addr)
	var out strings.Builder
	connect.Stdout, connect.Stderr = &out, &out
	if err := connect.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- connect.Wait() }()

	// The daemon's answer is timed on a call of the test's own: a CLI
	// process's start on a loaded machine is no business of this test.
	cc, err := daemon.Dial(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := pb.NewDaemonClient(cc).Status(ctx, &pb.StatusRequest{})
		cancel()
		if err != nil {
			t.Fatalf("status while connect ran: %v", err)
		}
		if st.Link == "connecting" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never said connecting: %v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := e.status(); st["link"] != "connecting" || st["manager"] != addr || st["connected"] != false {
		t.Fatalf("status --json while connecting: %v", st)
	}
	if out, _ := e.tether("--no-activity", "status"); !strings.Contains(out, "connecting to "+addr) {
		t.Fatalf("status while connecting:\n%s", out)
	}
	if out, err := e.tether("quit"); err != nil {
		t.Fatalf("quit while connecting: %v\n%s", err, out)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(out.String(), "cancelled") {
			t.Fatalf("connect after quit: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("connect did not end within 10s of quit")
	}
	if st := e.status(); st["connected"] != false || st["reason"] != "quit by the user" {
		t.Fatalf("status after quit: %v", st)
	}
}

// TestInterceptSurvivesDaemonRestart: a daemon restarted with its session
// cache serves its intercepts at the same local ports; the manager kept
// them ACTIVE, and no flow is refused for want of a port.
func TestInterceptSurvivesDaemonRestart(t *testing.T) {
	tm := newTeam(t)
	// A replace intercept: its flows may only go to the ports the agent
	// declared when it was created, which the cache must keep too.
	if out, err := tm.intercept(tm.alice, "a", "--replace"); err != nil {
		t.Fatalf("intercept: %v\n%s", err, out)
	}
	tm.expectRoutes(map[string]string{"": "dev alice"})

	if err := tm.alice.proc.Stop(); err != nil {
		t.Fatal(err)
	}
	tm.startMemberDaemon(tm.alice)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := tm.as(tm.alice, "--no-activity", "status")
		if strings.Contains(out, "Connected to") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's daemon did not resume:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	tm.expectRoutes(map[string]string{"": "dev alice"})
	if st, _ := tm.stateOf(tm.alice, "a"); st != "ACTIVE" {
		t.Fatalf("alice's intercept after the restart: %s", st)
	}
	if out, _ := tm.as(tm.alice, "--no-activity", "status"); !strings.Contains(out, fmt.Sprintf("-> 127.0.0.1:%d", devPort)) {
		t.Fatalf("status does not show the local port:\n%s", out)
	}
}

// startMemberDaemon starts m's daemon and waits until it answers.
func (tm *team) startMemberDaemon(m *member) {
	tm.t.Helper()
	p, err := tm.lab.Start(m.ns, filepath.Join(tm.dir, m.name+".log"), tetherBin, "--socket", m.socket, "--log-level", "debug", "daemon", "--tun-name", "tt"+m.name)
	if err != nil {
		tm.t.Fatal(err)
	}
	m.proc = p
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := tm.as(m, "--no-activity", "status"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("%s's daemon did not start", m.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

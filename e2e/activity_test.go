package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Short rules so that a day of real use fits in seconds.
var shortRules = []string{"--connection-ttl", "6s", "--report-interval", "1s", "--inactive-block-timeout", "3s"}

// TestActivityKeepsSession: what a person does keeps the session; what
// machines do does not. Each case runs a loop for longer than the TTL, and
// a case that does not keep the session proves that its traffic ran: each
// step must succeed while the session is up, and the counters must show it.
func TestActivityKeepsSession(t *testing.T) {
	const loopFor = 10 * time.Second
	for _, tc := range []struct {
		name  string
		keeps bool
		every time.Duration
		tool  string // a program the case needs
		do    func(e *env) error
		// ran checks, on the counters of a status taken while connected,
		// that the case's traffic reached the daemon; nil: do's success
		// is the proof.
		ran func(before, now map[string]any) error
	}{
		{"dig loop (UDP/DNS) does not", false, 500 * time.Millisecond, "dig", func(e *env) error {
			out, err := e.run(e.lab.Client, "dig", "+short", "+time=1", "+tries=1", "@"+e.lab.PodIP.String(), "svc.test.")
			if err == nil && !strings.Contains(out, "198.18.2.77") {
				err = fmt.Errorf("dig answered %q, want 198.18.2.77", out)
			}
			return err
		}, func(before, now map[string]any) error {
			if b, n := counter(before, "udp_flows"), counter(now, "udp_flows"); n < b+3 {
				return fmt.Errorf("udp_flows %v -> %v: the lookups did not reach the daemon", b, n)
			}
			return nil
		}},
		{"new curl connections every 2s do", true, 2 * time.Second, "curl", func(e *env) error {
			_, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "3", "http://"+e.podAddr(portHTTP)+"/")
			return err
		}, nil},
		{"status --no-activity loop does not", false, time.Second, "", func(e *env) error {
			_, err := e.tether("--no-activity", "status")
			return err
		}, nil},
		{"plain status every 2s does", true, 2 * time.Second, "", func(e *env) error {
			_, err := e.tether("status")
			return err
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := exec.LookPath(tc.tool); tc.tool != "" && err != nil {
				t.Skipf("%s not installed: the case could not prove its traffic ran", tc.tool)
			}
			e := newEnv(t, envOptions{mgrArgs: shortRules})
			before, _ := e.status()["counters"].(map[string]any)
			var last map[string]any // counters while still connected
			steps := 0
			end := time.Now().Add(loopFor)
			for time.Now().Before(end) {
				err := tc.do(e)
				st := e.status()
				up := st["connected"] == true
				if up {
					last, _ = st["counters"].(map[string]any)
				}
				// A step may fail only once the TTL has ended the session
				// (its routes are gone).
				if err != nil && (tc.keeps || up) {
					t.Fatalf("loop step %d failed while connected: %v", steps, err)
				}
				if err == nil {
					steps++
				}
				time.Sleep(tc.every)
			}
			if min := int(6 * time.Second / tc.every / 4); steps < min {
				t.Fatalf("only %d loop steps worked, want %d or more", steps, min)
			}
			if tc.ran != nil {
				if err := tc.ran(before, last); err != nil {
					t.Fatal(err)
				}
			}
			e.expectConnected(tc.keeps)
		})
	}
	t.Run("one long-lived streaming connection does not", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{mgrArgs: shortRules})
		ctx, cancel := context.WithTimeout(context.Background(), loopFor+5*time.Second)
		defer cancel()
		c, err := e.lab.DialContext(ctx, e.lab.Client, "tcp", e.podAddr(portEcho))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		buf := make([]byte, 64)
		rounds := 0
		for end := start.Add(loopFor); time.Now().Before(end); rounds++ {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			msg := fmt.Sprintf("%063d\n", rounds)
			_, err := io.WriteString(c, msg)
			if err == nil {
				_, err = io.ReadFull(c, buf)
			}
			if err == nil && string(buf) != msg {
				t.Fatalf("round %d: echo %q, want %q", rounds, buf, msg)
			}
			if err != nil {
				// Only the end of the session may close the stream: the
				// tunnel's dial was the last activity, so not before the
				// TTL (6s) after it.
				if d := time.Since(start); d < 6*time.Second {
					t.Fatalf("the stream failed after %v and %d round trips, before the TTL could end the session: %v", d, rounds, err)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if rounds < 40 {
			t.Fatalf("only %d round trips on the stream", rounds)
		}
		e.expectConnected(false)
	})
}

// counter is one of status's counters, 0 when absent.
func counter(counters map[string]any, name string) float64 {
	n, _ := counters[name].(float64)
	return n
}

// expectConnected checks the session's fate; an ended one must say why and
// leave no route behind.
func (e *env) expectConnected(want bool) {
	e.t.Helper()
	st := e.status()
	// A session the manager ended is learned at the next report.
	for deadline := time.Now().Add(3 * time.Second); !want && st["connected"] == true && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		st = e.status()
	}
	if got := st["connected"] == true; got != want {
		e.t.Fatalf("connected = %v, want %v; status: %v", got, want, st)
	}
	if want {
		return
	}
	if reason, _ := st["reason"].(string); !strings.Contains(reason, "inactive for 6s (grpc.connectionTTL)") {
		e.t.Fatalf("reason %q does not explain the TTL", reason)
	}
	if routes, _ := e.run(e.lab.Client, "ip", "route"); strings.Contains(routes, e.lab.PodNet.String()) {
		e.t.Fatalf("route left after the session ended:\n%s", routes)
	}
}

// TestStatusShowsActivity: status reports last activity, its reason, and the
// manager's view.
func TestStatusShowsActivity(t *testing.T) {
	e := newEnv(t, envOptions{mgrArgs: append([]string{"--metrics-addr", "127.0.0.1:9464"}, shortRules...)})
	if _, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "3", "http://"+e.podAddr(portHTTP)+"/"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // one report interval
	st := e.status()
	la, _ := st["last_activity"].(map[string]any)
	if la["reason"] != "tcp "+e.podAddr(portHTTP) {
		t.Fatalf("last_activity: %v", st["last_activity"])
	}
	mv, _ := st["manager_view"].(map[string]any)
	if mv["state"] != "ACTIVE" || mv["holds_block_right"] != true {
		t.Fatalf("manager_view: %v", st["manager_view"])
	}
	if ttl, _ := mv["ttl_left_seconds"].(float64); ttl <= 0 || ttl > 6 {
		t.Fatalf("ttl_left_seconds = %v", mv["ttl_left_seconds"])
	}
	out, err := e.tether("sessions")
	if err != nil || !strings.Contains(out, "ACTIVE") {
		t.Fatalf("sessions: %v\n%s", err, out)
	}
	metrics, err := e.run(e.lab.Mgr, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:9464/metrics")
	for _, want := range []string{"tether_manager_sessions 1", "tether_manager_sessions_active 1", "tether_manager_reports_total", "tether_manager_session_expirations_total 0"} {
		if err != nil || !strings.Contains(metrics, want) {
			t.Fatalf("manager metrics lack %q: %v\n%s", want, err, metrics)
		}
	}
}

// TestTTLIsFinal: a daemon whose session grpc.connectionTTL ended, restarted
// with its cache, comes back disconnected and says why, with no routes and
// no cache; only a new connect starts a session. One case is caught by the
// daemon's own idle time, the other by the manager (the daemon was used
// while the manager could not hear of it).
func TestTTLIsFinal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(e *env) // with the daemon connected; ends with it stopped and the TTL over
		reason string
	}{
		{"the daemon's own idle time is beyond the TTL", func(e *env) {
			e.stopDaemon()
			time.Sleep(8 * time.Second) // TTL 6s: the manager ends the session
		}, "session ended: inactive for 6s (grpc.connectionTTL)"},
		{"the manager ended it while the link was down", func(e *env) {
			if out, err := e.run(e.lab.Client, "ip", "link", "set", "cl0", "down"); err != nil {
				e.t.Fatalf("link down: %v\n%s", err, out)
			}
			// Used all along, but the manager hears nothing: it ends the
			// session after its TTL.
			for deadline := time.Now().Add(15 * time.Second); !e.managerLogged("session expired"); {
				if time.Now().After(deadline) {
					e.t.Fatal("the manager did not end the session within 15s")
				}
				if _, err := e.tether("status"); err != nil {
					e.t.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			e.stopDaemon()
			if out, err := e.run(e.lab.Client, "ip", "link", "set", "cl0", "up"); err != nil {
				e.t.Fatalf("link up: %v\n%s", err, out)
			}
			e.waitTCP(e.lab.Client, e.mgrAddr())
		}, "session ended by the traffic manager: inactive for 6s (grpc.connectionTTL)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{mgrArgs: shortRules})
			first := e.status()["session_id"]
			tc.before(e)
			e.startDaemon()
			st := e.waitReason(tc.reason)
			if st["connected"] != false {
				t.Fatalf("status: %v", st)
			}
			// It stays down: no route, no device, no cache to resume.
			time.Sleep(2 * time.Second)
			e.expectConnected(false)
			if out, err := e.run(e.lab.Client, "ip", "link", "show", e.tun); err == nil {
				t.Fatalf("device after the refused resume:\n%s", out)
			}
			if _, err := os.Stat(e.socket + ".session"); !os.IsNotExist(err) {
				t.Fatalf("the session cache is still there: %v", err)
			}
			if strings.Contains(tc.reason, "by the traffic manager") && !e.managerLogged("resume of an ended session refused") {
				t.Fatal("the manager did not refuse the resume")
			}
			e.connect()
			if st := e.status(); st["connected"] != true || st["session_id"] == first {
				t.Fatalf("connect after the TTL: %v; want a new session", st)
			}
		})
	}
}

// stopDaemon stops the daemon with SIGTERM, which keeps the session cache.
func (e *env) stopDaemon() {
	e.t.Helper()
	if err := e.daemon.Stop(); err != nil {
		e.t.Fatal(err)
	}
	if _, err := os.Stat(e.socket + ".session"); err != nil {
		e.t.Fatalf("no session cache after SIGTERM: %v", err)
	}
}

// waitReason waits until status says why it is not connected, with want in
// the reason.
func (e *env) waitReason(want string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := e.status()
		if reason, _ := st["reason"].(string); strings.Contains(reason, want) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("status does not say %q: %v", want, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// managerLogged reports whether the manager's log has a line with msg.
func (e *env) managerLogged(msg string) bool {
	b, _ := os.ReadFile(filepath.Join(e.dir, "manager.log"))
	return strings.Contains(string(b), msg)
}

// TestManagerRestartChangesNoActivity: a restarted manager takes an idle
// session's activity from the daemon's report, not from the restart: it is
// never ACTIVE, and IDLE with its true idle time once reported.
func TestManagerRestartChangesNoActivity(t *testing.T) {
	rules := []string{"--connection-ttl", "60s", "--report-interval", "1s", "--inactive-block-timeout", "3s"}
	e := newEnv(t, envOptions{mgrArgs: rules})
	before := e.status()["session_id"]
	time.Sleep(5 * time.Second) // idle for longer than the block timeout
	if err := e.mgr.Stop(); err != nil {
		t.Fatal(err)
	}
	e.startManager(rules...)
	for deadline := time.Now().Add(15 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("no dated report reached the restarted manager within 15s")
		}
		time.Sleep(200 * time.Millisecond)
		id := e.status()["session_id"]
		out, err := e.tether("--no-activity", "sessions", "--json")
		if err != nil || id == before {
			continue // not re-arrived yet
		}
		var list []map[string]any
		if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0]["session_id"] != id {
			t.Fatalf("sessions: %v\n%s", err, out)
		}
		switch s := list[0]; s["state"] {
		case "UNKNOWN":
			continue // no report yet
		case "IDLE":
			if idle, _ := s["idle_seconds"].(float64); idle < 5 {
				t.Fatalf("idle %vs after 5s without activity: %v", idle, s)
			}
			return
		default:
			t.Fatalf("the restart changed the session's activity: %v", s)
		}
	}
}

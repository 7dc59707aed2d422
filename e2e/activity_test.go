package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Short rules so that a day of real use fits in seconds.
var shortRules = []string{"--connection-ttl", "6s", "--report-interval", "1s", "--inactive-block-timeout", "3s"}

// TestActivityKeepsSession: what a person does keeps the session; what
// machines do does not. Each case runs a loop for longer than the TTL.
func TestActivityKeepsSession(t *testing.T) {
	const loopFor = 10 * time.Second
	for _, tc := range []struct {
		name  string
		keeps bool
		every time.Duration
		do    func(e *env) error
	}{
		{"dig loop (UDP/DNS) does not", false, 500 * time.Millisecond, func(e *env) error {
			_, err := e.run(e.lab.Client, "dig", "+short", "+time=1", "+tries=1", "@"+e.lab.PodIP.String(), "svc.test.")
			return err
		}},
		{"new curl connections every 2s do", true, 2 * time.Second, func(e *env) error {
			_, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "3", "http://"+e.podAddr(portHTTP)+"/")
			return err
		}},
		{"status --no-activity loop does not", false, time.Second, func(e *env) error {
			_, err := e.tether("--no-activity", "status")
			return err
		}},
		{"plain status every 2s does", true, 2 * time.Second, func(e *env) error {
			_, err := e.tether("status")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{mgrArgs: shortRules})
			end := time.Now().Add(loopFor)
			for time.Now().Before(end) {
				if err := tc.do(e); err != nil && tc.keeps {
					t.Fatalf("loop step failed: %v", err)
				}
				time.Sleep(tc.every)
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
		buf := make([]byte, 64)
		end := time.Now().Add(loopFor)
		for i := 0; time.Now().Before(end); i++ {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := fmt.Fprintf(c, "%063d", i); err != nil {
				break // the session ended: its flows were closed
			}
			if _, err := c.Read(buf); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		e.expectConnected(false)
	})
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

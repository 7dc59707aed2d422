package platform

import (
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		name, usec, pid string
		want            time.Duration
		wantErr         bool
	}{
		{name: "unset"},
		{name: "half", usec: "30000000", want: 15 * time.Second},
		{name: "our pid", usec: "30000000", pid: "42", want: 15 * time.Second},
		{name: "another pid", usec: "30000000", pid: "43"},
		{name: "bad pid", usec: "30000000", pid: "x", wantErr: true},
		{name: "bad usec", usec: "30s", wantErr: true},
		{name: "zero", usec: "0", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := watchdogInterval(tc.usec, tc.pid, 42)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("watchdogInterval(%q, %q) = %v, %v; want %v, error %v", tc.usec, tc.pid, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestNotifier(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{
		{"path", filepath.Join(t.TempDir(), "notify.sock")},
		{"abstract", "@tether-test-" + rand.Text()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: tc.addr, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer sock.Close()
			env := map[string]string{
				"NOTIFY_SOCKET": tc.addr,
				"WATCHDOG_USEC": "20000", // WATCHDOG=1 every 10 ms
				"WATCHDOG_PID":  strconv.Itoa(os.Getpid()),
			}
			n := newNotifier(func(k string) string { return env[k] }, os.Getpid(), nil)
			defer n.Close()

			recv := func(want string) {
				t.Helper()
				buf := make([]byte, 256)
				sock.SetReadDeadline(time.Now().Add(5 * time.Second))
				for {
					k, err := sock.Read(buf)
					if err != nil {
						t.Fatalf("waiting for %s: %v", want, err)
					}
					switch got := string(buf[:k]); got {
					case want:
						return
					case "WATCHDOG=1": // any time
					default:
						t.Fatalf("got %q, want %q", got, want)
					}
				}
			}
			recv("WATCHDOG=1")
			if err := n.Ready(); err != nil {
				t.Fatalf("Ready: %v", err)
			}
			recv("READY=1")
			recv("WATCHDOG=1")
			if err := n.Stopping(); err != nil {
				t.Fatalf("Stopping: %v", err)
			}
			recv("STOPPING=1")
			if err := n.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := n.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

// TestNotifierOff: outside systemd, and with a watchdog meant for another
// process, nothing is sent and no goroutine runs.
func TestNotifierOff(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newNotifier(func(string) string { return "" }, os.Getpid(), nil)
	if err := n.Ready(); err != nil {
		t.Errorf("Ready outside systemd: %v", err)
	}
	if n.done != nil {
		t.Error("a watchdog runs outside systemd")
	}
	n.Close()

	env := map[string]string{"NOTIFY_SOCKET": "@unused", "WATCHDOG_USEC": "20000", "WATCHDOG_PID": "1"}
	n = newNotifier(func(k string) string { return env[k] }, os.Getpid(), nil)
	if n.done != nil {
		t.Error("a watchdog runs for WATCHDOG_PID of another process")
	}
	n.Close()
}

// TestNotifierNoListener: a socket nobody listens on is an error from Ready,
// which the daemon logs; it does not stop the daemon.
func TestNotifierNoListener(t *testing.T) {
	env := map[string]string{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "gone.sock")}
	n := newNotifier(func(k string) string { return env[k] }, os.Getpid(), nil)
	defer n.Close()
	if err := n.Ready(); err == nil {
		t.Error("Ready to a socket nobody listens on succeeded")
	}
}

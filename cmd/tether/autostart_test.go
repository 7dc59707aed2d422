package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/tether-dev/tether/daemon"
)

func TestDaemonLogPath(t *testing.T) {
	for _, tc := range []struct{ socket, want string }{
		{daemon.DefaultSocket, "/var/log/tether/daemon.log"},
		{"/tmp/x/daemon.sock", "/tmp/x/daemon.sock.log"},
	} {
		if got := daemonLogPath(tc.socket); got != tc.want {
			t.Errorf("daemonLogPath(%q) = %q, want %q", tc.socket, got, tc.want)
		}
	}
}

func TestProbeSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "daemon.sock")
	if got := probeSocket(sock); got != socketAbsent {
		t.Errorf("no socket: %v, want absent", got)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if got := probeSocket(sock); got != socketListening {
		t.Errorf("listening: %v, want listening", got)
	}
	if os.Geteuid() != 0 {
		os.Chmod(sock, 0)
		if got := probeSocket(sock); got != socketForbidden {
			t.Errorf("mode 0: %v, want forbidden", got)
		}
		os.Chmod(sock, 0o600)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if got := probeSocket(sock); got != socketAbsent {
		t.Errorf("socket left by a dead daemon: %v, want absent", got)
	}
}

func TestUnitSocket(t *testing.T) {
	for _, tc := range []struct{ name, unit, want string }{
		{"default", "[Service]\nExecStart=/usr/local/bin/tether daemon\n", daemon.DefaultSocket},
		{"flag", "[Service]\nExecStart=/usr/local/bin/tether daemon --socket /run/tether-2/daemon.sock --tun-name \"tether%%d\"\n", "/run/tether-2/daemon.sock"},
		{"flag=", "[Service]\nExecStart=/usr/local/bin/tether --socket=/run/x.sock daemon\n", "/run/x.sock"},
		{"quoted", "ExecStart=/usr/local/bin/tether daemon --socket \"/run/y.sock\"\n", "/run/y.sock"},
		{"no ExecStart", "[Unit]\nDescription=x\n", daemon.DefaultSocket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unitSocket(tc.unit); got != tc.want {
				t.Errorf("unitSocket = %q, want %q", got, tc.want)
			}
		})
	}
}

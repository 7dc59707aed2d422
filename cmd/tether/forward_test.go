package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/tether-dev/tether/rpc/daemon"
)

// The --manager flags of identity and TLS mean nothing through the
// kubeconfig: connect says so before it starts anything.
func TestConnectKubeconfigRefusesManagerFlags(t *testing.T) {
	t.Setenv("TETHER_MANAGER", "")
	for _, args := range [][]string{{"--token-file", "alice.token"}, {"--tls"}, {"--ca-file", "ca.pem"}} {
		t.Run(args[0], func(t *testing.T) {
			_, err := runTether(t, append([]string{"--socket", filepath.Join(t.TempDir(), "none.sock"), "connect"}, args...)...)
			if err == nil || !strings.Contains(err.Error(), args[0]+" is for --manager") {
				t.Fatalf("connect %v without --manager: %v", args, err)
			}
		})
	}
}

// The forwarder's record is private, and status finds it only for the
// daemon's manager address that is the user's socket.
func TestForwardState(t *testing.T) {
	rt := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", rt)
	t.Setenv("SUDO_UID", "")
	p, err := userForwardPaths()
	if err != nil {
		t.Fatal(err)
	}
	if p.socket != filepath.Join(rt, "tether", "forward.sock") || p.managerAddr() != "unix://"+p.socket {
		t.Fatalf("paths %+v", p)
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	want := forwardState{PID: os.Getpid(), Socket: p.socket, Context: "lab", Namespace: "tether", Pod: "traffic-manager-1", TLS: true}
	if err := writeForwardState(p.state, want); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p.state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record %v %v, want mode 0600", fi.Mode(), err)
	}
	for _, tc := range []struct {
		name, manager string
		found         bool
	}{
		{"the user's socket", p.managerAddr(), true},
		{"a manager address", "198.18.1.2:8081", false},
		{"another socket", "unix:///tmp/other.sock", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := forwardedVia(tc.manager)
			if ok != tc.found || (ok && got != want) {
				t.Fatalf("forwardedVia(%s) = %+v %v", tc.manager, got, ok)
			}
		})
	}
	// status says where the session goes, in words and in JSON.
	var out strings.Builder
	printStatus(&out, &pb.StatusResponse{Connected: true, Manager: p.managerAddr(), User: "alice"})
	if w := "Forward:  port-forward to pod tether/traffic-manager-1 (context lab; TLS verified with configmap tether/traffic-manager-ca; forwarder pid"; !strings.Contains(out.String(), w) {
		t.Errorf("status lacks %q:\n%s", w, out.String())
	}
	if f := toStatusJSON(&pb.StatusResponse{Manager: p.managerAddr()}).Forward; f == nil || f.Pod != "traffic-manager-1" || f.Context != "lab" || !f.TLS {
		t.Errorf("status --json forward = %+v", f)
	}
	if f := toStatusJSON(&pb.StatusResponse{Manager: "198.18.1.2:8081"}).Forward; f != nil {
		t.Errorf("status --json forward with --manager = %+v, want null", f)
	}

	// A record of a dead forwarder is not a forwarder.
	dead := want
	dead.PID = 1 << 22
	b, _ := json.Marshal(dead)
	if err := os.WriteFile(p.state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := forwardedVia(p.managerAddr()); ok {
		t.Fatal("a dead forwarder's record counts")
	}
}

// A record whose socket nobody serves is stale, even when its pid is alive
// (reused by another process): quit removes it and signals nobody.
func TestStopForwarderStaleRecord(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	t.Setenv("SUDO_UID", "")
	p, err := userForwardPaths()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// This test's own pid: a SIGTERM would end the test binary.
	if err := writeForwardState(p.state, forwardState{PID: os.Getpid(), Socket: p.socket}); err != nil {
		t.Fatal(err)
	}
	stopped, err := stopForwarder()
	if stopped || err != nil {
		t.Fatalf("stopForwarder on a stale record = %v, %v", stopped, err)
	}
	if _, err := os.Stat(p.state); !os.IsNotExist(err) {
		t.Fatalf("the stale record is still there: %v", err)
	}
}

package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/privsock"
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

// ownForwardPaths are the forwarder paths of the user running the test,
// under a runtime directory of its own (returned), with the forwarder's
// directory made.
func ownForwardPaths(t *testing.T) (forwardPaths, string) {
	t.Helper()
	rt := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", rt)
	t.Setenv("SUDO_UID", "")
	p, err := userForwardPaths()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return p, rt
}

// The forwarder's record is private, and status finds it only for the
// daemon's manager address that is the user's socket.
func TestForwardState(t *testing.T) {
	p, rt := ownForwardPaths(t)
	if p.socket != filepath.Join(rt, "tether", "forward.sock") || p.managerAddr() != "unix://"+p.socket {
		t.Fatalf("paths %+v", p)
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
	p, _ := ownForwardPaths(t)
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

// Under sudo the forwarder is the user's: their uid, groups, home and
// /run/user/UID (else /tmp/tether-UID: nobody has no home), none of
// root's environment but PATH, and KUBECONFIG absolute (the forwarder
// runs in /). Only paths are computed here: nothing is made.
func TestSudoForwardPaths(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SUDO_UID counts for root only")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("needs the user nobody: %v", err)
	}
	t.Setenv("SUDO_UID", u.Uid)
	t.Setenv("HOME", "/root")
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/0")
	t.Setenv("KUBECONFIG", "lab.kubeconfig"+string(filepath.ListSeparator)+"/etc/kube/shared")
	p, err := userForwardPaths()
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if p.uid != uid || p.gid != gid || len(p.groups) == 0 || p.groups[0] != gid {
		t.Fatalf("uid %d gid %d groups %v, want %d %d and %d first", p.uid, p.gid, p.groups, uid, gid, gid)
	}
	wd, _ := os.Getwd()
	want := []string{"HOME=" + u.HomeDir, "USER=nobody", "LOGNAME=nobody", "PATH=" + os.Getenv("PATH"),
		"KUBECONFIG=" + filepath.Join(wd, "lab.kubeconfig") + string(filepath.ListSeparator) + "/etc/kube/shared"}
	wantDir := "/tmp/tether-" + u.Uid
	if rt := "/run/user/" + u.Uid; privsock.Owned(rt, uid) == nil {
		want = slices.Insert(want, 4, "XDG_RUNTIME_DIR="+rt)
		wantDir = rt + "/tether"
	}
	if !slices.Equal(p.env, want) {
		t.Errorf("env %q, want %q", p.env, want)
	}
	if p.dir != wantDir || p.socket != wantDir+"/forward.sock" {
		t.Errorf("dir %s socket %s, want %s", p.dir, p.socket, wantDir)
	}
}

// A forwarder directory of another user (one made first in /tmp) is
// believed in nothing: connect refuses it before starting anything, quit
// neither signals the pid of its record nor removes the record.
func TestForwarderDirOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("another user's directory needs root (to chown it)")
	}
	p, _ := ownForwardPaths(t)
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = victim.Process.Kill(); _ = victim.Wait() })
	ln, err := net.Listen("unix", p.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := writeForwardState(p.state, forwardState{PID: victim.Process.Pid, Socket: p.socket, Namespace: "tether"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.dir, p.socket, p.state} {
		if err := os.Lchown(f, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	g := &globals{logLevel: "info"}
	if _, _, err := ensureForwarder(context.Background(), g, kubeTarget{managerNamespace: "tether"}); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534, not to uid 0") {
		t.Fatalf("connect with another user's directory: %v, want refused", err)
	}
	if _, ok := forwardedVia(p.managerAddr()); ok {
		t.Fatal("status believes another user's record")
	}
	if stopped, err := stopForwarder(); stopped || err != nil {
		t.Fatalf("quit with another user's record = %v, %v", stopped, err)
	}
	if !processAlive(victim.Process.Pid) {
		t.Fatal("quit signalled the pid of another user's record")
	}
	if _, err := os.Stat(p.state); err != nil {
		t.Fatalf("quit removed another user's record: %v", err)
	}
}

func TestAbsKubeconfig(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	sep := string(filepath.ListSeparator)
	for _, tc := range []struct{ name, in, want string }{
		{"absolute", "/home/a/.kube/config", "/home/a/.kube/config"},
		{"relative", "lab.kubeconfig", filepath.Join(wd, "lab.kubeconfig")},
		{"list", "a" + sep + "/b" + sep + "../c", filepath.Join(wd, "a") + sep + "/b" + sep + filepath.Join(filepath.Dir(wd), "c")},
		{"empty entries stay", sep + "a", sep + filepath.Join(wd, "a")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := absKubeconfig(tc.in); got != tc.want {
				t.Fatalf("absKubeconfig(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

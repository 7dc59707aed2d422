package e2e

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestConnectStartsDaemon: `tether connect` with no daemon starts one,
// detached, and `tether quit --stop-daemon` stops it: routes and TUN
// removed, socket gone.
func TestConnectStartsDaemon(t *testing.T) {
	e := newEnv(t, envOptions{noDaemon: true})
	// The daemon that connect starts inherits the CLI's environment
	// (TETHER_* configure it): a TUN name of its own.
	t.Setenv("TETHER_TUN_NAME", e.tun)
	t.Cleanup(func() { stopDaemonsOn(t, e.socket) })

	out, err := e.tether("connect", "--manager", e.mgrAddr())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	logPath := e.socket + ".log"
	if want := "Starting the tether daemon… (log: " + logPath + ")"; !strings.Contains(out, want) {
		t.Errorf("connect said\n%s\nwant a line %q", out, want)
	}
	if !strings.Contains(out, "Connected to "+e.mgrAddr()) {
		t.Errorf("connect said\n%s\nwant Connected", out)
	}
	pids := daemonsOn(e.socket)
	if len(pids) != 1 {
		t.Fatalf("daemons on %s: %v, want one", e.socket, pids)
	}
	if sid, err := unix.Getsid(pids[0]); err != nil || sid != pids[0] {
		t.Errorf("the daemon (pid %d) is in session %d (%v), want a session of its own", pids[0], sid, err)
	}
	if st := e.status(); st["device"] != e.tun || st["connected"] != true {
		t.Errorf("status: connected %v on %v, want true on %s", st["connected"], st["device"], e.tun)
	}
	if out, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "10", "http://"+e.podAddr(portHTTP)+"/"); err != nil || !strings.Contains(out, "hello from the pod") {
		t.Fatalf("curl through the started daemon: %v\n%s", err, out)
	}

	out, err = e.tether("quit", "--stop-daemon")
	if err != nil {
		t.Fatalf("quit --stop-daemon: %v", err)
	}
	if !strings.Contains(out, "Disconnected") || !strings.Contains(out, "Stopped the tether daemon") {
		t.Errorf("quit --stop-daemon said\n%s", out)
	}
	if _, err := os.Stat(e.socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after quit --stop-daemon: %v, want gone", err)
	}
	waitNoDaemon(t, e.socket, 5*time.Second)
	if out, err := e.run(e.lab.Client, "ip", "link", "show", e.tun); err == nil {
		t.Errorf("TUN %s still there after quit --stop-daemon:\n%s", e.tun, out)
	}
	if b, _ := os.ReadFile(logPath); !bytes.Contains(b, []byte("daemon stopped")) {
		t.Errorf("the daemon's log does not end with its stop:\n%s", lastLines(string(b), 10))
	}
	if out, err := e.tether("quit", "--stop-daemon"); err != nil || !strings.Contains(out, "No tether daemon runs on") {
		t.Errorf("quit --stop-daemon without a daemon: %v\n%s", err, out)
	}
}

// TestControlSocketUsers: the socket is for root and its group; of the
// group, only the session's owner may use a session.
func TestControlSocketUsers(t *testing.T) {
	requireLab(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed")
	}
	nobody, err1 := user.Lookup("nobody")
	owner, err2 := user.Lookup("daemon")
	if err := errors.Join(err1, err2); err != nil {
		t.Skip("needs the users nobody and daemon:", err)
	}
	group, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		t.Skip("nobody's group:", err)
	}
	// The daemon's socket group, and `sudo tether connect` run by owner.
	t.Setenv("TETHER_SOCKET_GROUP", group.Name)
	t.Setenv("SUDO_UID", owner.Uid)
	e := newEnv(t, envOptions{})
	// Let other users reach the socket and the binary.
	for _, dir := range []string{filepath.Dir(e.dir), e.dir, filepath.Dir(tetherBin)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	fi, err := os.Stat(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	if gid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)); fi.Mode().Perm() != 0o660 || gid != group.Gid {
		t.Errorf("socket mode %v group %s, want 0660 group %s", fi.Mode().Perm(), gid, group.Gid)
	}

	// as runs the CLI as uid with gid as its only group.
	as := func(uid, gid, socket string, args ...string) (string, error) {
		return e.run(e.lab.Client, "setpriv", append([]string{"--reuid=" + uid, "--regid=" + gid, "--clear-groups",
			tetherBin, "--socket", socket}, args...)...)
	}
	if out, err := as(owner.Uid, group.Gid, e.socket, "--no-activity", "status"); err != nil || !strings.Contains(out, "Connected to") {
		t.Errorf("the owner's status: %v\n%s", err, out)
	}
	want := "the tether daemon is in use by daemon (uid " + owner.Uid + "); you are uid " + nobody.Uid
	if out, err := as(nobody.Uid, group.Gid, e.socket, "status"); err == nil || !strings.Contains(out, "tether: "+want+"\n") {
		t.Errorf("another user's status: %v\n%s\nwant %q", err, out, want)
	}
	if out, err := as(nobody.Uid, group.Gid, e.socket, "quit"); err == nil || !strings.Contains(out, want) {
		t.Errorf("another user's quit: %v\n%s\nwant %q", err, out, want)
	}
	if st := e.status(); st["connected"] != true {
		t.Errorf("root's status: connected %v", st["connected"])
	}
	if out, err := as(nobody.Uid, "4242", e.socket, "status"); err == nil || !strings.Contains(out, "permission denied on the control socket "+e.socket) {
		t.Errorf("a user outside the socket's group: %v\n%s", err, out)
	}
	none := filepath.Join(e.dir, "none", "daemon.sock")
	if out, err := as(nobody.Uid, group.Gid, none, "connect", "--manager", e.mgrAddr()); err == nil ||
		!strings.Contains(out, "starting the daemon needs root: run `sudo tether daemon install` or `sudo tether connect`") {
		t.Errorf("a user starting a daemon: %v\n%s", err, out)
	}

	// The owner is the session's: once it ends, the next user to connect
	// owns the next one.
	if _, err := e.tether("quit"); err != nil {
		t.Fatal(err)
	}
	if out, err := as(nobody.Uid, group.Gid, e.socket, "connect", "--manager", e.mgrAddr()); err != nil {
		t.Fatalf("nobody connects after the session ended: %v\n%s", err, out)
	}
	want = "the tether daemon is in use by nobody (uid " + nobody.Uid + "); you are uid " + owner.Uid
	if out, err := as(owner.Uid, group.Gid, e.socket, "status"); err == nil || !strings.Contains(out, want) {
		t.Errorf("the former owner's status: %v\n%s\nwant %q", err, out, want)
	}
	// A daemon that restarts and resumes the session keeps its owner.
	e.restartDaemon()
	if out, err := as(owner.Uid, group.Gid, e.socket, "status"); err == nil || !strings.Contains(out, want) {
		t.Errorf("after a daemon restart, the former owner's status: %v\n%s\nwant %q", err, out, want)
	}
	if out, err := as(nobody.Uid, group.Gid, e.socket, "--no-activity", "status"); err != nil || !strings.Contains(out, "Connected to") {
		t.Errorf("after a daemon restart, the owner's status: %v\n%s", err, out)
	}
}

// daemonsOn returns the pids of live `tether ... daemon` processes with
// --socket socket (a daemon that connect started is no child of the test).
func daemonsOn(socket string) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "tether" || !hasArgs(args, "--socket", socket) || !hasArgs(args, "daemon") {
			continue
		}
		// A zombie (nobody reaps in some containers) is gone for us.
		if stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// hasArgs reports whether want occurs in args as consecutive arguments.
func hasArgs(args []string, want ...string) bool {
	for i := 0; i+len(want) <= len(args); i++ {
		if slices.Equal(args[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

func waitNoDaemon(t testing.TB, socket string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(daemonsOn(socket)) > 0 {
		if time.Now().After(deadline) {
			t.Errorf("the daemon on %s still runs %v later: pids %v", socket, timeout, daemonsOn(socket))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopDaemonsOn stops, by pid, the daemons a test's CLI started on socket
// (before the lab and its namespaces go): SIGTERM, then SIGKILL.
func stopDaemonsOn(t testing.TB, socket string) {
	pids := daemonsOn(socket)
	if len(pids) == 0 {
		return
	}
	t.Logf("stopping daemons left on %s: %v", socket, pids)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(daemonsOn(socket)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range daemonsOn(socket) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

package privsock

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestDir(t *testing.T) {
	for _, tc := range []struct {
		name, runtime, home, want string
	}{
		{name: "runtime dir", runtime: "/run/user/1000", home: "/home/a", want: "/run/user/1000/tether"},
		{name: "home fallback", home: "/home/a", want: "/home/a/.cache/tether"},
		{name: "neither", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Dir(tc.runtime, tc.home)
			if got != tc.want || (err != nil) != (tc.want == "") {
				t.Fatalf("Dir = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// The socket is 0600 in a 0700 directory of its owner: another user
// cannot open it even when every directory above is open to all, and a
// directory of another user is refused.
func TestOnlyTheOwnerOpens(t *testing.T) {
	// t.TempDir's parent is private; this one is as open as /run/user or
	// a home can be.
	base, err := os.MkdirTemp("", "privsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	// A loose directory left from before is tightened.
	dir := filepath.Join(base, "tether")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "forward.sock")
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for path, want := range map[string]os.FileMode{dir: 0o700, sock: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() {
			t.Errorf("%s: owner %d, want %d", path, st.Uid, os.Getuid())
		}
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the owner cannot open the socket: %v", err)
	}
	c.Close()
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "another process listens") {
		t.Fatalf("a second listener on a live socket: %v", err)
	}

	if os.Getuid() != 0 {
		t.Skip("another user's attempt needs root (to run it as nobody)")
	}
	nc, err := exec.LookPath("nc")
	if err != nil {
		t.Skip("another user's attempt needs nc (OpenBSD netcat)")
	}
	asNobody := func() error {
		cmd := exec.Command(nc, "-U", "-z", sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return &exec.ExitError{ProcessState: cmd.ProcessState, Stderr: out}
		}
		return nil
	}
	if err := asNobody(); err == nil {
		t.Fatal("nobody opened the user's socket")
	}
	// The check can tell: with the directory opened up, nobody gets in.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := asNobody(); err != nil {
		t.Fatalf("nobody cannot open an open socket either (%v): the check proves nothing", err)
	}

	other := filepath.Join(base, "others")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := MkdirPrivate(other, 0); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Fatalf("a directory of another user: %v, want refused", err)
	}
}

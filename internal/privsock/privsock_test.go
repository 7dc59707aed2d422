package privsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestDir(t *testing.T) {
	uid := os.Getuid()
	home := t.TempDir() // uid's
	for _, tc := range []struct {
		name, runtime, home string
		uid                 int
		want                string
	}{
		{name: "runtime dir", runtime: "/run/user/1000", home: home, uid: uid, want: "/run/user/1000/tether"},
		{name: "home fallback", home: home, uid: uid, want: home + "/.cache/tether"},
		// nobody's /nonexistent, daemon's /usr/sbin: no home of theirs.
		{name: "missing home", home: filepath.Join(home, "nonexistent"), uid: uid, want: fmt.Sprintf("/tmp/tether-%d", uid)},
		{name: "another's home", home: home, uid: uid + 1, want: fmt.Sprintf("/tmp/tether-%d", uid+1)},
		{name: "no home", uid: uid, want: fmt.Sprintf("/tmp/tether-%d", uid)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Dir(tc.runtime, tc.home, tc.uid); got != tc.want {
				t.Fatalf("Dir = %q, want %q", got, tc.want)
			}
		})
	}
}

// Owned is what root believes a user's directory by: a directory, not a
// link to one, of that uid.
func TestOwned(t *testing.T) {
	uid := os.Getuid()
	dir := t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir string
		uid       int
		want      string // in the error; "" none
	}{
		{name: "own", dir: dir, uid: uid},
		{name: "another's", dir: dir, uid: uid + 1, want: fmt.Sprintf("belongs to uid %d, not to uid %d", uid, uid+1)},
		{name: "link", dir: link, uid: uid, want: "is not a directory"},
		{name: "file", dir: file, uid: uid, want: "is not a directory"},
		{name: "missing", dir: filepath.Join(dir, "missing"), uid: uid, want: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Owned(tc.dir, tc.uid)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Owned = %v, want %q", err, tc.want)
			}
			if tc.name == "missing" && !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Owned of a missing directory = %v, want fs.ErrNotExist", err)
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

// Package privsock makes Unix sockets that only their owner (and root) can
// open: the socket sits in a directory of mode 0700 owned by the user, and
// is itself mode 0600. The forwarder listens on one so the root daemon can
// use the user's identity through it and other users cannot.
package privsock

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// tmpDir holds the private directories of users without a runtime
// directory or a home of their own, as tmux (/tmp/tmux-UID) and podman
// (/tmp/podman-run-UID) do. Not os.TempDir: root's `sudo tether connect`
// and the user's forwarder must find the same directory, and TMPDIR is
// not passed from one to the other.
const tmpDir = "/tmp"

// Dir is uid's private directory for tether's sockets and state:
// $XDG_RUNTIME_DIR/tether (a tmpfs only the user can open, emptied at
// logout), else HOME/.cache/tether when HOME is uid's own directory, else
// /tmp/tether-UID (system accounts have none: nobody's home is
// /nonexistent, daemon's /usr/sbin is root's). A directory in /tmp can be
// made first by another user: MkdirPrivate and Owned refuse it.
func Dir(runtimeDir, home string, uid int) string {
	if runtimeDir != "" {
		return filepath.Join(runtimeDir, "tether")
	}
	if home != "" && homeOf(home, uid) {
		return filepath.Join(home, ".cache", "tether")
	}
	return filepath.Join(tmpDir, "tether-"+strconv.Itoa(uid))
}

// homeOf reports whether home is a directory of uid; a home reached
// through a symbolic link counts (BSDs link /home to /usr/home).
func homeOf(home string, uid int) bool {
	fi, err := os.Stat(home)
	if err != nil || !fi.IsDir() {
		return false
	}
	owner, err := ownerUID(fi)
	// Where files have no owners there is no other user's home to avoid.
	return err != nil || owner == uid
}

// Owned says why dir is not a directory of uid (not a symbolic link), or
// nil: root checks a user's directory before it trusts the record and
// socket in it, which whoever owns the directory controls. The error wraps
// fs.ErrNotExist when there is no dir.
func Owned(dir string, uid int) error {
	_, err := owned(dir, uid)
	return err
}

func owned(dir string, uid int) (os.FileInfo, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("private directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory: remove it", dir)
	}
	owner, err := ownerUID(fi)
	if err != nil {
		return nil, fmt.Errorf("private directory %s: %w", dir, err)
	}
	if owner != uid {
		return nil, fmt.Errorf("%s belongs to uid %d, not to uid %d: remove it, or set XDG_RUNTIME_DIR to a directory of your own", dir, owner, uid)
	}
	return fi, nil
}

// MkdirPrivate makes dir (and its parents) and insists that dir is a
// directory of uid (Owned) with mode 0700, fixing the mode of one it
// owns. A directory of another user is refused: whoever owns it could
// replace the socket.
func MkdirPrivate(dir string, uid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("private directory: %w", err)
	}
	fi, err := owned(dir, uid)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("private directory: %w", err)
		}
	}
	return nil
}

// Listen listens on the socket path in a private directory of the current
// user (MkdirPrivate), mode 0600. A socket left by a dead process is
// replaced; one that answers is refused.
func Listen(path string) (net.Listener, error) {
	if err := MkdirPrivate(filepath.Dir(path), os.Getuid()); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another process listens on %s", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The directory already keeps others out; the mode says so again for
	// a directory someone loosens later.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}

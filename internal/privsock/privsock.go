// Package privsock makes Unix sockets that only their owner (and root) can
// open: the socket sits in a directory of mode 0700 owned by the user, and
// is itself mode 0600. The forwarder listens on one so the root daemon can
// use the user's identity through it and other users cannot.
package privsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Dir is the user's private directory for tether's sockets and state:
// $XDG_RUNTIME_DIR/tether (a tmpfs only the user can open, emptied at
// logout), else HOME/.cache/tether.
func Dir(runtimeDir, home string) (string, error) {
	if runtimeDir != "" {
		return filepath.Join(runtimeDir, "tether"), nil
	}
	if home == "" {
		return "", errors.New("neither XDG_RUNTIME_DIR nor HOME is set: no private directory for the forwarder's socket")
	}
	return filepath.Join(home, ".cache", "tether"), nil
}

// MkdirPrivate makes dir (and its parents) and insists that dir is a
// directory of uid with mode 0700, fixing the mode of one it owns. A
// directory of another user is refused: whoever owns it could replace the
// socket.
func MkdirPrivate(dir string, uid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("private directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("private directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	owner, err := ownerUID(fi)
	if err != nil {
		return fmt.Errorf("private directory %s: %w", dir, err)
	}
	if owner != uid {
		return fmt.Errorf("%s belongs to uid %d, not to uid %d: remove it, or set XDG_RUNTIME_DIR to a directory of your own", dir, owner, uid)
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

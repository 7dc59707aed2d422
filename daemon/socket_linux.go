package daemon

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/tether/daemon.sock"

// listenUnix creates the socket with mode 0660 from the start: no moment
// in which others may connect. The umask is process-wide; New runs before
// the daemon creates any other file.
func listenUnix(path string) (net.Listener, error) {
	old := unix.Umask(0o117)
	defer unix.Umask(old)
	return net.Listen("unix", path)
}

// peerUID returns the uid of the process at the other end of c, from the
// kernel (SO_PEERCRED: the credentials the peer had when it connected).
func peerUID(c net.Conn) (uid uint32, ok bool, err error) {
	sc, isSC := c.(syscall.Conn)
	if !isSC {
		return 0, false, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	var cred *unix.Ucred
	var optErr error
	if err := raw.Control(func(fd uintptr) {
		cred, optErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, false, err
	}
	if optErr != nil {
		return 0, false, fmt.Errorf("SO_PEERCRED: %w", optErr)
	}
	return cred.Uid, true, nil
}

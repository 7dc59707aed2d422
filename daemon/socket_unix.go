//go:build linux || darwin

package daemon

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenUnix creates the socket with mode 0660 from the start: no moment
// in which others may connect. The umask is process-wide; New runs before
// the daemon creates any other file.
func listenUnix(path string) (net.Listener, error) {
	old := unix.Umask(0o117)
	defer unix.Umask(old)
	return net.Listen("unix", path)
}

// peerUID returns the uid of the process at the other end of c, as the
// kernel recorded it when the peer connected (peerUIDFromFD, per OS).
func peerUID(c net.Conn) (uid uint32, ok bool, err error) {
	sc, isSC := c.(syscall.Conn)
	if !isSC {
		return 0, false, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	var optErr error
	if err := raw.Control(func(fd uintptr) { uid, optErr = peerUIDFromFD(int(fd)) }); err != nil {
		return 0, false, err
	}
	if optErr != nil {
		return 0, false, optErr
	}
	return uid, true, nil
}

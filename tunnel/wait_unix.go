//go:build unix

package tunnel

import (
	"net"

	"golang.org/x/sys/unix"
)

// waitReadable blocks until conn has data, EOF or an error to read, using
// the runtime's poller: the callback peeks one byte and asks the poller to
// wait while there is nothing. A socket error (ECONNRESET) is returned
// here, because the peek consumes it: a later Read would see only EOF.
func waitReadable(conn *net.TCPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var one [1]byte
	var peekErr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, perr := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if perr == unix.EAGAIN {
			return false
		}
		if perr != nil && perr != unix.EINTR {
			peekErr = &net.OpError{Op: "read", Net: "tcp", Err: perr}
		}
		return true
	})
	if err != nil {
		return err
	}
	return peekErr
}

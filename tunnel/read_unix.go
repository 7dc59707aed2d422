//go:build unix

package tunnel

import (
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// readPooled reads what conn has into a buffer from chunkPool, non-nil
// exactly when n > 0 and the caller's to put back. A buffer is taken only
// for a read that finds data, so an idle connection holds none: the read
// runs in the poller's callback, without waiting, and puts the buffer back
// when there is nothing yet. (A peek for readability and then a read took
// two syscalls per chunk.)
func readPooled(conn *net.TCPConn) (*[]byte, int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, 0, err
	}
	var bp *[]byte
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		bp = chunkPool.Get().(*[]byte)
		for {
			n, rerr = unix.Read(int(fd), *bp)
			if rerr != unix.EINTR {
				break
			}
		}
		if rerr == unix.EAGAIN {
			chunkPool.Put(bp)
			bp = nil
			return false
		}
		return true
	})
	switch {
	case err != nil:
	case rerr != nil:
		err = &net.OpError{Op: "read", Net: "tcp", Source: conn.LocalAddr(), Addr: conn.RemoteAddr(), Err: rerr}
	case n == 0:
		err = io.EOF
	}
	if err != nil {
		if bp != nil {
			chunkPool.Put(bp)
		}
		return nil, 0, err
	}
	return bp, n, nil
}

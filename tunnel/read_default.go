//go:build !unix

package tunnel

import "net"

// readPooled reads what conn has into a buffer from chunkPool, non-nil
// exactly when n > 0 and the caller's to put back. There is no poller hook
// here: the read waits holding its buffer.
func readPooled(conn *net.TCPConn) (*[]byte, int, error) {
	bp := chunkPool.Get().(*[]byte)
	n, err := conn.Read(*bp)
	if n == 0 {
		chunkPool.Put(bp)
		return nil, 0, err
	}
	return bp, n, err
}

package tunnel

import (
	"net"
	"sync"
)

// chunkSize is the most one read forwards in one frame.
const chunkSize = 128 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// readPooled waits until conn is readable and only then takes a buffer from
// the pool, so that an idle connection holds no buffer. The buffer is the
// caller's to put back.
func readPooled(conn *net.TCPConn) (*[]byte, int, error) {
	if err := waitReadable(conn); err != nil {
		return nil, 0, err
	}
	bp := chunkPool.Get().(*[]byte)
	n, err := conn.Read(*bp)
	return bp, n, err
}

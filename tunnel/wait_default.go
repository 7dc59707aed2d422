//go:build !unix

package tunnel

import "net"

// waitReadable has no poller hook here; Read itself waits, holding a buffer.
func waitReadable(*net.TCPConn) error { return nil }

//go:build !linux && !darwin

package daemon

import "net"

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/tether/daemon.sock"

// listenUnix listens on path; listenSocket sets the mode afterwards.
func listenUnix(path string) (net.Listener, error) {
	return net.Listen("unix", path)
}

// peerUID does not know the peer here: the BSDs (getpeereid) and Windows
// (no uid at all) are not implemented. The daemon then relies on the
// socket's permissions alone and does not apply the owner rule
// (see access.go).
func peerUID(net.Conn) (uid uint32, ok bool, err error) { return 0, false, nil }

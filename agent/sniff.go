package agent

import (
	"bytes"
	"net"
	"time"
)

// httpStarts are the ways an HTTP connection begins: an HTTP/1.x method and
// its space, or the start of the HTTP/2 client preface (h2c with prior
// knowledge).
var httpStarts = [][]byte{
	[]byte("GET "), []byte("HEAD "), []byte("POST "), []byte("PUT "), []byte("DELETE "),
	[]byte("CONNECT "), []byte("OPTIONS "), []byte("TRACE "), []byte("PATCH "),
	// WebDAV (RFC 4918, 3253, 5323).
	[]byte("PROPFIND "), []byte("PROPPATCH "), []byte("MKCOL "), []byte("COPY "), []byte("MOVE "),
	[]byte("LOCK "), []byte("UNLOCK "), []byte("REPORT "), []byte("SEARCH "),
	[]byte("PRI * HTTP/2.0"),
}

// sniffMax is enough bytes to decide: at least the longest of httpStarts
// (14).
const sniffMax = 16

type verdict int

const (
	needMore verdict = iota
	isHTTP
	notHTTP
)

// sniff classifies the first bytes of a connection.
func sniff(b []byte) verdict {
	v := notHTTP
	for _, s := range httpStarts {
		if bytes.HasPrefix(b, s) {
			return isHTTP
		}
		if len(b) < len(s) && bytes.HasPrefix(s, b) {
			v = needMore
		}
	}
	return v
}

// peek reads the first bytes of c, waiting at most timeout for them, and
// reports whether they start HTTP. A client that says nothing in time (a
// server-first protocol), closes, or fails is not HTTP. The bytes read are
// returned, for whoever gets the connection.
func peek(c *net.TCPConn, timeout time.Duration) ([]byte, bool) {
	buf := make([]byte, sniffMax)
	n := 0
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	for {
		m, err := c.Read(buf[n:])
		n += m
		switch sniff(buf[:n]) {
		case isHTTP:
			return buf[:n], true
		case notHTTP:
			return buf[:n], false
		}
		if err != nil || n == len(buf) {
			return buf[:n], false
		}
	}
}

// prefixConn gives back the peeked bytes before the rest of the connection.
// It spells out net.Conn rather than embed *net.TCPConn, whose WriteTo
// would skip the prefix.
type prefixConn struct {
	c      *net.TCPConn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.c.Read(b)
}

func (p *prefixConn) Write(b []byte) (int, error)        { return p.c.Write(b) }
func (p *prefixConn) CloseWrite() error                  { return p.c.CloseWrite() }
func (p *prefixConn) Close() error                       { return p.c.Close() }
func (p *prefixConn) LocalAddr() net.Addr                { return p.c.LocalAddr() }
func (p *prefixConn) RemoteAddr() net.Addr               { return p.c.RemoteAddr() }
func (p *prefixConn) SetDeadline(t time.Time) error      { return p.c.SetDeadline(t) }
func (p *prefixConn) SetReadDeadline(t time.Time) error  { return p.c.SetReadDeadline(t) }
func (p *prefixConn) SetWriteDeadline(t time.Time) error { return p.c.SetWriteDeadline(t) }

package tunnel

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Conn presents a Flow as a net.Conn, for code that wants one (an HTTP
// transport, Splice). Close resets the flow; Finish ends it cleanly.
// Deadlines are not supported: the flow's context bounds its life.
type Conn struct {
	f             *Flow
	local, remote net.Addr
	rest          []byte // received but not yet read; valid until the next Recv

	closeOnce sync.Once
}

// NewConn wraps f. local and remote are what LocalAddr and RemoteAddr say.
func NewConn(f *Flow, local, remote net.Addr) *Conn {
	return &Conn{f: f, local: local, remote: remote}
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.rest) == 0 {
		b, err := c.f.Recv()
		if err != nil {
			return 0, err
		}
		c.rest = b
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

// Write implements net.Conn.
func (c *Conn) Write(p []byte) (int, error) {
	for sent := 0; sent < len(p); {
		n := min(len(p)-sent, chunkSize)
		if err := c.f.Send(p[sent : sent+n]); err != nil {
			return sent, err
		}
		sent += n
	}
	return len(p), nil
}

// CloseWrite half-closes the flow.
func (c *Conn) CloseWrite() error { return c.f.CloseWrite() }

// Close resets the flow.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { c.f.Close(true) })
	return nil
}

// Finish ends the flow cleanly, after both sides half-closed.
func (c *Conn) Finish() {
	c.closeOnce.Do(func() { c.f.Close(false) })
}

func (c *Conn) LocalAddr() net.Addr              { return c.local }
func (c *Conn) RemoteAddr() net.Addr             { return c.remote }
func (c *Conn) SetDeadline(time.Time) error      { return errNoDeadline }
func (c *Conn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (c *Conn) SetWriteDeadline(time.Time) error { return errNoDeadline }

var errNoDeadline = errors.New("tunnel.Conn: deadlines are not supported")

// halfCloser is a connection that can half-close.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// Splice copies a and b into each other until both directions end. A clean
// end half-closes each side after its peer's EOF; an error on either side
// resets both (TCP connections with an RST). It returns the first error.
func Splice(a, b halfCloser) error {
	errc := make(chan error, 2)
	cp := func(dst, src halfCloser) {
		_, err := io.Copy(dst, src)
		if err == nil {
			err = dst.CloseWrite()
		}
		if err != nil {
			reset(a)
			reset(b)
		}
		errc <- err
	}
	go cp(a, b)
	go cp(b, a)
	err := errors.Join(<-errc, <-errc)
	if err == nil {
		finish(a)
		finish(b)
	}
	return err
}

func reset(c net.Conn) {
	if t, ok := c.(*net.TCPConn); ok {
		t.SetLinger(0)
	}
	c.Close()
}

func finish(c net.Conn) {
	if f, ok := c.(interface{ Finish() }); ok {
		f.Finish()
		return
	}
	c.Close()
}

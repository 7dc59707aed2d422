package netlab

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/net/dns/dnsmessage"
)

// Test servers for sockets made with Lab.Listen and Lab.ListenPacket (they work on any socket).
// Each Serve* function takes ownership of the socket; the stop function it returns closes the
// socket and every connection, and waits for all goroutines the server started. stop may be
// called more than once.

// ServeHTTP serves h on ln. Handlers must return once their request's context is done: stop
// closes the connections and waits for the handlers.
func ServeHTTP(ln net.Listener, h http.Handler) (stop func()) {
	tl := newTrackingListener(ln)
	var handlers sync.WaitGroup // one per connection the server took, until closed or hijacked
	srv := &http.Server{
		Handler: h,
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew: // called by Serve before it starts the connection's goroutine
				handlers.Add(1)
			case http.StateClosed, http.StateHijacked:
				handlers.Done()
			}
		},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(tl) // http.ErrServerClosed after stop, or the listener's error
	}()
	return sync.OnceFunc(func() {
		_ = srv.Close()
		<-done
		tl.closeAll() // a connection accepted while Close was running escapes srv.Close
		handlers.Wait()
	})
}

// ServeUDPEcho sends every datagram received on pc back to its sender.
func ServeUDPEcho(pc net.PacketConn) (stop func()) {
	return servePacket(pc, func(b []byte, _ net.Addr) []byte { return b })
}

// ServeDNS is a minimal authoritative DNS server on pc. records maps names (FQDN with the
// trailing dot; matched case-insensitively) to addresses: A queries get IPv4 addresses, AAAA
// queries IPv6 ones, other types of a known name an empty answer, unknown names NXDOMAIN.
func ServeDNS(pc net.PacketConn, records map[string]netip.Addr) (stop func()) {
	zone := make(map[string]netip.Addr, len(records))
	for name, a := range records {
		zone[canonicalName(name)] = a.Unmap()
	}
	return servePacket(pc, func(b []byte, _ net.Addr) []byte { return answerDNS(b, zone) })
}

// servePacket answers each datagram with reply(datagram) unless that is nil.
func servePacket(pc net.PacketConn, reply func([]byte, net.Addr) []byte) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if isTransient(err) {
					continue
				}
				return // closed by stop, or broken
			}
			if out := reply(buf[:n], from); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	return sync.OnceFunc(func() {
		_ = pc.Close()
		<-done
	})
}

// isTransient reports errors after which a socket still works: timeouts, and an ICMP error
// reported for one datagram.
func isTransient(err error) bool {
	var ne net.Error
	return (errors.As(err, &ne) && ne.Timeout()) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EMSGSIZE)
}

func canonicalName(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// dnsTTL is the TTL of answers, in seconds.
const dnsTTL = 30

// answerDNS returns the response to the DNS query msg, or nil if msg is not worth an answer.
// zone has canonical names (see canonicalName).
func answerDNS(msg []byte, zone map[string]netip.Addr) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return nil
	}
	resp := dnsmessage.Header{
		ID:               h.ID,
		Response:         true,
		OpCode:           h.OpCode,
		Authoritative:    true,
		RecursionDesired: h.RecursionDesired,
	}
	q, err := p.Question()
	switch {
	case h.OpCode != 0:
		resp.RCode = dnsmessage.RCodeNotImplemented
		return buildDNS(resp, nil, nil)
	case err != nil:
		resp.RCode = dnsmessage.RCodeFormatError
		return buildDNS(resp, nil, nil)
	}
	addr, ok := zone[strings.ToLower(q.Name.String())]
	switch {
	case !ok:
		resp.RCode = dnsmessage.RCodeNameError
		return buildDNS(resp, &q, nil)
	case q.Class != dnsmessage.ClassINET && q.Class != dnsmessage.ClassANY:
		resp.RCode = dnsmessage.RCodeRefused
		return buildDNS(resp, &q, nil)
	}
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: dnsTTL}
	return buildDNS(resp, &q, func(b *dnsmessage.Builder) error {
		switch {
		case addr.Is4() && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL):
			rh.Type = dnsmessage.TypeA
			return b.AResource(rh, dnsmessage.AResource{A: addr.As4()})
		case addr.Is6() && (q.Type == dnsmessage.TypeAAAA || q.Type == dnsmessage.TypeALL):
			rh.Type = dnsmessage.TypeAAAA
			return b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: addr.As16()})
		}
		return nil // the name exists, without records of this type
	})
}

// buildDNS packs a response with the question q (if any) and the answers added by answers.
func buildDNS(h dnsmessage.Header, q *dnsmessage.Question, answers func(*dnsmessage.Builder) error) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	if q != nil {
		if err := b.StartQuestions(); err != nil {
			return nil
		}
		if err := b.Question(*q); err != nil {
			return nil
		}
	}
	if answers != nil {
		if err := b.StartAnswers(); err != nil {
			return nil
		}
		if err := answers(&b); err != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// ServeSink reads each TCP connection to its end, then writes the SHA-256 of all bytes
// received (64 hex digits and "\n") and closes the connection.
func ServeSink(ln net.Listener) (stop func()) {
	return ServeConns(ln, func(c net.Conn) {
		h := sha256.New()
		buf := make([]byte, 256<<10)
		if _, err := io.CopyBuffer(h, onlyReader{c}, buf); err != nil {
			return
		}
		_, _ = io.WriteString(c, hex.EncodeToString(h.Sum(nil))+"\n")
	})
}

// ServeEcho copies each TCP connection's input to its output. When the client half-closes,
// it finishes writing and half-closes too.
func ServeEcho(ln net.Listener) (stop func()) {
	return ServeConns(ln, func(c net.Conn) {
		if _, err := io.Copy(c, c); err != nil {
			return
		}
		// Nothing can arrive after the client's FIN and all our data is queued: the close
		// that follows sends no RST.
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	})
}

// onlyReader hides a connection's WriterTo, so io.CopyBuffer uses the given buffer.
type onlyReader struct{ io.Reader }

// ServeConns runs handle on each accepted connection (unwrapped, so *net.TCPConn's splice
// and CloseWrite are there) in a goroutine of its own and closes the connection when handle
// returns. stop closes the listener and every connection still open, and waits for the
// handlers.
func ServeConns(ln net.Listener, handle func(net.Conn)) (stop func()) {
	tl := newTrackingListener(ln)
	var conns sync.WaitGroup // one per running handler
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := tl.accept()
			if err != nil {
				if isTransient(err) {
					continue
				}
				return // closed by stop, or broken
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				handle(c.Conn)
			}()
		}
	}()
	return sync.OnceFunc(func() {
		_ = tl.Close()
		<-done
		tl.closeAll()
		conns.Wait()
	})
}

// trackingListener remembers the connections it accepted and not yet closed, so that a stop
// function can close them all.
type trackingListener struct {
	net.Listener

	mu     sync.Mutex // guards conns, closed
	conns  map[*trackedConn]struct{}
	closed bool // closeAll ran: close connections as they are accepted
}

func newTrackingListener(ln net.Listener) *trackingListener {
	return &trackingListener{Listener: ln, conns: make(map[*trackedConn]struct{})}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.accept()
	if err != nil {
		return nil, err // not a nil *trackedConn in a non-nil interface
	}
	return c, nil
}

func (l *trackingListener) accept() (*trackedConn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// closeAll closes every open connection and any accepted later.
func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.conns {
		c.Conn.Close()
	}
	clear(l.conns)
}

// trackedConn is a connection of a trackingListener; closing it forgets it.
type trackedConn struct {
	net.Conn
	l *trackingListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// CloseWrite half-closes the connection if it supports that.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-dev/tether/manager/conflict"
	pb "github.com/tether-dev/tether/rpc/manager"
)

const (
	// idleTimeout ends keep-alive connections, the clients' and the
	// agent's own toward app and developers, idle this long.
	idleTimeout = 90 * time.Second
	// maxIdlePerTarget bounds the idle HTTP/1 connections kept per target.
	maxIdlePerTarget = 64
)

// ServeHTTP routes one request of a connection found to speak HTTP: the
// table is read afresh for every request, so keep-alive connections follow
// changes at once.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.tasks.Add() {
		http.Error(w, "agent stopping", http.StatusServiceUnavailable)
		return
	}
	defer a.tasks.Done()
	if isH2CUpgrade(r.Header) {
		// Declined (RFC 9113 allows it): the connection stays HTTP/1.1,
		// so its requests keep being routed one by one.
		r.Header.Del("Upgrade")
		r.Header.Del("HTTP2-Settings")
	}
	t, why := a.routes.Load().pick(r, a.now())
	if t == nil {
		t = a.app
	}
	a.log.Debug("route request", "client", r.RemoteAddr, "method", r.Method, "host", r.Host, "path", r.URL.Path,
		"proto", r.Proto, "to", t.String(), "why", why)
	if t != a.app { // only an intercept's flow names its source
		r = r.WithContext(context.WithValue(r.Context(), sourceKey{}, r.RemoteAddr))
	}
	t.proxy.ServeHTTP(w, r)
}

func isH2CUpgrade(h http.Header) bool {
	for _, v := range h.Values("Upgrade") {
		if strings.EqualFold(strings.TrimSpace(v), "h2c") {
			return true
		}
	}
	return false
}

// sourceKey carries the client's address from a request to the flow its
// transport opens (the manager logs it).
type sourceKey struct{}

// newTarget builds the target of an intercept: HTTP transports whose
// connections are flows to its owner. A request whose flow does not open
// goes to the app.
func (a *Agent) newTarget(id string, spec *pb.InterceptSpec) *target {
	t := &target{id: id, spec: spec}
	if spec.Kind == pb.InterceptKind_HTTP {
		f, err := conflict.Filter{Headers: spec.Headers, Path: spec.Path}.Compile()
		if err != nil {
			a.log.Warn("intercept has an invalid filter: it gets no requests", "intercept", id, "error", err)
		} else {
			t.filter = &f
		}
	}
	t.rt = newSplitTransport(func(ctx context.Context, _, _ string) (net.Conn, error) {
		src, _ := ctx.Value(sourceKey{}).(string)
		return a.open(id, src)
	})
	t.proxy = a.newProxy(t, &fallback{a: a, t: t})
	return t
}

// newAppTarget builds the app's target.
func (a *Agent) newAppTarget() *target {
	t := &target{}
	d := &net.Dialer{Timeout: a.cfg.OpenTimeout}
	t.rt = newSplitTransport(func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", a.cfg.App)
	})
	t.proxy = a.newProxy(t, t.rt)
	return t
}

func (a *Agent) newProxy(t *target, rt http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The transports dial the target themselves; Host and the
			// rest of the request stay as the client sent them.
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = a.cfg.App
			for _, h := range forwardedHeaders {
				if v, ok := pr.In.Header[h]; ok {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport: rt,
		ErrorLog:  a.errLog,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil {
				a.log.Debug("request failed", "client", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
					"to", t.String(), "error", err)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
}

// forwardedHeaders are what ReverseProxy's Rewrite mode drops and a
// transparent forwarder keeps.
var forwardedHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// splitTransport sends each request in the protocol it came in: HTTP/1.x,
// or HTTP/2 without TLS (h2c) for gRPC and other HTTP/2 clients.
type splitTransport struct {
	h1, h2 *http.Transport
}

func newSplitTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) splitTransport {
	h2 := new(http.Protocols)
	h2.SetUnencryptedHTTP2(true)
	mk := func(p *http.Protocols) *http.Transport {
		return &http.Transport{
			DialContext:         dial,
			Protocols:           p,
			DisableCompression:  true, // the request as is: no Accept-Encoding added
			MaxIdleConnsPerHost: maxIdlePerTarget,
			IdleConnTimeout:     idleTimeout,
		}
	}
	return splitTransport{h1: mk(nil), h2: mk(h2)}
}

func (s splitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.ProtoMajor == 2 {
		return s.h2.RoundTrip(r)
	}
	return s.h1.RoundTrip(r)
}

func (s splitTransport) closeIdle() {
	s.h1.CloseIdleConnections()
	s.h2.CloseIdleConnections()
}

// fallback sends requests to an intercept, or to the app when the
// intercept's flow does not open: then no byte of the request was sent.
type fallback struct {
	a *Agent
	t *target
}

func (f *fallback) RoundTrip(r *http.Request) (*http.Response, error) {
	out, body := r, (*guardedBody)(nil)
	if r.Body != nil && r.Body != http.NoBody {
		body = &guardedBody{rc: r.Body}
		out = r.WithContext(r.Context())
		out.Body = body
	}
	resp, err := f.t.rt.RoundTrip(out)
	var oe *openError
	if err == nil || !errors.As(err, &oe) || (body != nil && body.touched.Load()) || r.Context().Err() != nil {
		return resp, err
	}
	f.a.bench(f.t, err)
	f.a.log.Debug("route request", "client", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
		"to", "app", "why", f.t.String()+" did not open")
	return f.a.app.rt.RoundTrip(r)
}

// guardedBody lends a request body to a first attempt: it notes whether the
// attempt read from it, and its Close leaves the body open for a second
// attempt (the server closes it after the handler).
type guardedBody struct {
	rc      interface{ Read([]byte) (int, error) }
	touched atomic.Bool
}

func (g *guardedBody) Read(p []byte) (int, error) {
	g.touched.Store(true)
	return g.rc.Read(p)
}

func (g *guardedBody) Close() error { return nil }

// connQueue is a net.Listener for the HTTP server: its connections are the
// ones the accept loop found to speak HTTP.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to the server; once the queue is closed it closes c.
func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

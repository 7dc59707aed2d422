// Package grpcproxy is a transparent gRPC proxy: every call a client makes
// on the proxy's listener is made again on an upstream ClientConn, frames
// copied as they are (never decoded), headers, trailers and status passed
// both ways. The upstream ClientConn adds what the caller must not hold:
// the forwarder (kube/forward) gives it a dialer through an API-server
// port-forward and the user's identity.
//
// The proxy also passes the upstream link's health on: while the upstream
// is not ready it accepts no connections, and when a ready upstream breaks
// it closes its clients' connections, so a client (the daemon) sees the
// same connectivity transitions as with a direct link and re-arrives after
// a manager restart.
//
// Lifecycle: New → Serve(ln) → Close (idempotent; waits for its goroutines).
// mwitkow/grpc-proxy shows the pattern; this is a small rewrite of it on
// gRPC's CodecV2 buffers.
package grpcproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// readyWait bounds how long an accepted connection waits for the upstream
// to become ready; the client then sees a failed connect and retries with
// its own backoff.
const readyWait = 10 * time.Second

// hopHeaders are metadata of one hop, set by each gRPC transport itself.
var hopHeaders = []string{":authority", "content-type", "user-agent", "grpc-timeout", "te"}

// Proxy is a transparent gRPC proxy to one upstream ClientConn. It is alive
// until Close.
type Proxy struct {
	upstream *grpc.ClientConn
	log      *slog.Logger
	srv      *grpc.Server
	// strip are incoming metadata keys never passed upstream (e.g.
	// authorization: the upstream adds the identity itself).
	strip []string

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}

	ctx    context.Context // alive until Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the watcher

	closeOnce sync.Once
}

// New is a proxy to upstream. Incoming metadata keys in strip are dropped.
// opts are the server's for its clients, e.g. the keepalive policy their
// pings need (gRPC's default refuses pings more often than every 5
// minutes and closes such a client's connection).
func New(upstream *grpc.ClientConn, strip []string, log *slog.Logger, opts ...grpc.ServerOption) *Proxy {
	p := &Proxy{upstream: upstream, log: log.With("component", "grpcproxy"), strip: strip, conns: map[net.Conn]struct{}{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.srv = grpc.NewServer(append(opts, grpc.ForceServerCodecV2(codec{}), grpc.UnknownServiceHandler(p.handle))...)
	p.wg.Add(1)
	go p.watch()
	return p
}

// Serve serves calls on ln until Close.
func (p *Proxy) Serve(ln net.Listener) error {
	err := p.srv.Serve(&gatedListener{Listener: ln, p: p})
	if errors.Is(err, grpc.ErrServerStopped) || p.ctx.Err() != nil {
		return nil
	}
	return err
}

// Close stops serving, ending the calls in flight, and waits for the
// watcher. The upstream ClientConn stays its owner's.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		p.srv.Stop()
		p.wg.Wait()
	})
	return nil
}

// watch closes the clients' connections whenever a ready upstream breaks,
// and keeps the upstream connecting while it is idle.
func (p *Proxy) watch() {
	defer p.wg.Done()
	p.log.Info("watching the upstream link")
	defer p.log.Info("stopped watching the upstream link")
	wasReady := false
	for {
		st := p.upstream.GetState()
		switch st {
		case connectivity.Ready:
			wasReady = true
		case connectivity.Idle, connectivity.TransientFailure, connectivity.Connecting:
			if wasReady {
				p.log.Warn("the upstream link broke: closing the clients' connections so they reconnect", "state", st.String())
				p.closeConns()
				wasReady = false
			}
			if st == connectivity.Idle {
				p.upstream.Connect()
			}
		case connectivity.Shutdown:
			p.closeConns()
			return
		}
		if !p.upstream.WaitForStateChange(p.ctx, st) {
			return
		}
	}
}

func (p *Proxy) closeConns() {
	p.mu.Lock()
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close() // removes itself from conns
	}
}

// waitReady waits until the upstream is ready, at most readyWait.
func (p *Proxy) waitReady() bool {
	ctx, cancel := context.WithTimeout(p.ctx, readyWait)
	defer cancel()
	for {
		st := p.upstream.GetState()
		switch st {
		case connectivity.Ready:
			return true
		case connectivity.Idle:
			p.upstream.Connect()
		case connectivity.Shutdown:
			return false
		}
		if !p.upstream.WaitForStateChange(ctx, st) {
			return false
		}
	}
}

// gatedListener hands out connections only while the upstream is ready,
// and records them so a broken upstream can close them.
type gatedListener struct {
	net.Listener
	p *Proxy
}

func (l *gatedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.p.waitReady() {
			l.p.log.Warn("refused a client: the upstream link is not ready")
			c.Close()
			if l.p.ctx.Err() != nil {
				return nil, net.ErrClosed
			}
			continue
		}
		tc := &trackedConn{Conn: c, p: l.p}
		l.p.mu.Lock()
		l.p.conns[tc] = struct{}{}
		l.p.mu.Unlock()
		return tc, nil
	}
}

type trackedConn struct {
	net.Conn
	p    *Proxy
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	})
	return c.Conn.Close()
}

// handle makes the call the client made on the upstream and copies its
// messages both ways.
func (p *Proxy) handle(_ any, ss grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "grpcproxy: no method in the stream")
	}
	md, _ := metadata.FromIncomingContext(ss.Context())
	md = md.Copy()
	for _, k := range append(p.strip, hopHeaders...) {
		md.Delete(k)
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	cs, err := p.upstream.NewStream(metadata.NewOutgoingContext(ctx, md), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		method, grpc.ForceCodecV2(codec{}))
	if err != nil {
		return err
	}
	up := make(chan error, 1)
	go func() { up <- toUpstream(ss, cs) }()
	down := make(chan error, 1)
	go func() { down <- toClient(cs, ss) }()
	for range 2 {
		select {
		case err := <-up:
			if err != nil {
				// The client's side failed: end the upstream call. toClient
				// then returns with the upstream's cancelled status.
				cancel()
				<-down
				return status.FromContextError(err).Err()
			}
			up = nil // the client half-closed; wait for the upstream's end
		case err := <-down:
			ss.SetTrailer(cs.Trailer())
			if !errors.Is(err, io.EOF) {
				cancel()
				return err // the upstream's status
			}
			return nil
		}
	}
	return nil
}

// toUpstream copies the client's messages to the upstream and half-closes
// it after the client's last. nil: the client half-closed.
func toUpstream(ss grpc.ServerStream, cs grpc.ClientStream) error {
	for {
		f := &frame{}
		if err := ss.RecvMsg(f); err != nil {
			if errors.Is(err, io.EOF) {
				return cs.CloseSend()
			}
			return err
		}
		if err := cs.SendMsg(f); err != nil {
			// The upstream ended the call; toClient gets its status.
			return nil
		}
	}
}

// toClient copies the upstream's headers and messages to the client; it
// returns io.EOF when the upstream ended the call with OK, else its status.
func toClient(cs grpc.ClientStream, ss grpc.ServerStream) error {
	first := true
	for {
		f := &frame{}
		err := cs.RecvMsg(f)
		if first {
			// Headers come before the first message, or with the status of
			// a call without any (a trailers-only response).
			first = false
			if hdr, herr := cs.Header(); herr == nil && len(hdr) > 0 {
				if err := ss.SendHeader(hdr); err != nil {
					f.free()
					return err
				}
			}
		}
		if err != nil {
			return err
		}
		if err := ss.SendMsg(f); err != nil {
			return err
		}
	}
}

// frame is one message as it travels: gRPC's buffers, never decoded.
type frame struct{ data mem.BufferSlice }

func (f *frame) free() {
	f.data.Free()
	f.data = nil
}

// codec passes frames through. Unmarshal takes a reference to the received
// buffers, and Marshal hands it to the sender, which frees it once sent.
type codec struct{}

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, status.Errorf(codes.Internal, "grpcproxy: cannot marshal %T", v)
	}
	d := f.data
	f.data = nil
	return d, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return status.Errorf(codes.Internal, "grpcproxy: cannot unmarshal into %T", v)
	}
	data.Ref()
	f.data = data
	return nil
}

// Name keeps the content-type application/grpc+proto of the callers.
func (codec) Name() string { return "proto" }

package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"

	pb "github.com/tether-dev/tether/rpc/manager"
)

// DefaultOpenTimeout bounds how long Open waits for the manager's dial.
const DefaultOpenTimeout = 10 * time.Second

// OpenError is a flow the manager could not open.
type OpenError struct {
	Status pb.OpenStatus
	Msg    string
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("%s: %s", e.Status, e.Msg)
}

// Tunnel streams kept for later flows (see Client); variables for tests.
var (
	maxIdleStreams    = 16
	idleStreamTimeout = 30 * time.Second
)

// Client opens flows through a manager. The caller's context carries the
// session credentials (see the manager package).
//
// A Tunnel stream whose flow ended cleanly waits in a pool for the next
// flow, which then skips the set-up and teardown of an HTTP/2 stream and
// of the manager's handler, the largest part of a short connection's cost
// (docs/architecture.md, "Multiplexing"). The pool keeps at most maxIdleStreams, each
// for at most idleStreamTimeout; an idle daemon's pool empties, so it holds
// no timer either.
type Client struct {
	mgr         pb.ManagerClient
	openTimeout time.Duration

	mu     sync.Mutex
	idle   []*idleStream // oldest first
	reaper *time.Timer   // armed whenever idle is not empty
	closed bool
}

// idleStream is a Tunnel stream between flows.
type idleStream struct {
	stream grpc.BidiStreamingClient[pb.Frame, pb.Frame]
	reset  context.CancelFunc
	since  time.Time
}

// NewClient returns a Client over cc. openTimeout 0 means DefaultOpenTimeout.
func NewClient(cc grpc.ClientConnInterface, openTimeout time.Duration) *Client {
	if openTimeout == 0 {
		openTimeout = DefaultOpenTimeout
	}
	return &Client{mgr: pb.NewManagerClient(cc), openTimeout: openTimeout}
}

// Close resets the idle streams; open flows are their owners' to end.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	if c.reaper != nil {
		c.reaper.Stop()
	}
	c.mu.Unlock()
	c.flush()
}

// Open asks the manager to open a flow to dst and waits for its answer.
// ctx bounds the life of the flow.
func (c *Client) Open(ctx context.Context, proto pb.Protocol, src, dst netip.AddrPort) (*Flow, error) {
	open := &pb.OpenFlow{Protocol: proto, Source: src.String(), Destination: dst.String()}
	st := c.take()
	f, err := c.open(ctx, c.mgr.Tunnel, st, open, true)
	var answered *OpenError
	if st == nil || err == nil || errors.As(err, &answered) || ctx.Err() != nil {
		return f, err
	}
	// The stream died while it waited (the link dropped, the manager
	// restarted or ended the session) before the manager saw this open;
	// the other idle streams are as dead. One more try, on a new stream.
	c.flush()
	return c.open(ctx, c.mgr.Tunnel, nil, open, true)
}

// OpenIntercept is the agent's open: a flow to the owner of intercept id
// for a connection that arrived on the workload's port, answered once the
// owner's daemon has dialed its local port. ctx bounds the life of the flow.
func (c *Client) OpenIntercept(ctx context.Context, id, source string, port uint16) (*Flow, error) {
	return c.open(ctx, c.mgr.AgentTunnel, nil, &pb.OpenFlow{Protocol: pb.Protocol_TCP, InterceptId: id, Source: source, Port: uint32(port)}, false)
}

type streamCall func(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[pb.Frame, pb.Frame], error)

// open opens a flow on st, an idle Tunnel stream, or else on a new stream
// that call starts. A pooled flow's stream outlives it: ctx resets the
// stream only while the flow lasts, and a clean end returns it to c.
func (c *Client) open(ctx context.Context, call streamCall, st *idleStream, open *pb.OpenFlow, pooled bool) (*Flow, error) {
	f := &Flow{}
	var sctx context.Context
	switch {
	case st != nil:
		f.stream, f.reset = st.stream, st.reset
	case pooled:
		// The values of ctx (credentials), not its end.
		sctx, f.reset = context.WithCancel(context.WithoutCancel(ctx))
	default:
		sctx, f.reset = context.WithCancel(ctx)
	}
	if pooled {
		f.pool = c
		f.unwatch = context.AfterFunc(ctx, f.reset)
	}
	// The timeout is armed before the call: a manager still connecting
	// blocks the call itself.
	timer := time.AfterFunc(c.openTimeout, f.reset)
	fail := func(err error) (*Flow, error) {
		f.Close(true)
		if !timer.Stop() {
			return nil, &OpenError{Status: pb.OpenStatus_OPEN_UNREACHABLE, Msg: fmt.Sprintf("manager did not answer within %s", c.openTimeout)}
		}
		return nil, err
	}
	if f.stream == nil {
		s, err := call(sctx)
		if err != nil {
			return fail(fmt.Errorf("open stream: %w", err))
		}
		f.stream = s
	}
	f.out.Open = open
	err := f.stream.Send(&f.out)
	f.out.Open = nil
	if err != nil {
		return fail(fmt.Errorf("send open: %w", streamErr(f.stream, err)))
	}
	if err := f.stream.RecvMsg(&f.in); err != nil {
		if err == io.EOF {
			err = errors.New("manager ended the flow without an answer")
		}
		return fail(fmt.Errorf("open: %w", err))
	}
	switch {
	case f.in.Opened == nil:
		return fail(errors.New("open: manager sent no Opened frame"))
	case f.in.Opened.Status != pb.OpenStatus_OPEN_OK:
		oerr := &OpenError{Status: f.in.Opened.Status, Msg: f.in.Opened.Error}
		if !pooled || !timer.Stop() {
			return fail(oerr)
		}
		// The manager keeps a Tunnel stream for the next flow.
		f.done = true
		f.Close(false)
		return nil, oerr
	case !timer.Stop():
		return fail(nil) // the timeout fired as the answer came: the stream is gone
	}
	return f, nil
}

// take returns the newest idle stream, or nil.
func (c *Client) take() *idleStream {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.idle)
	if n == 0 {
		return nil
	}
	st := c.idle[n-1]
	c.idle[n-1] = nil
	c.idle = c.idle[:n-1]
	return st
}

// put keeps st for a later flow, or resets it when the pool is full.
func (c *Client) put(st *idleStream) {
	c.mu.Lock()
	if c.closed || len(c.idle) >= maxIdleStreams {
		c.mu.Unlock()
		st.reset()
		return
	}
	st.since = time.Now()
	c.idle = append(c.idle, st)
	switch {
	case len(c.idle) > 1: // armed for an older one
	case c.reaper == nil:
		c.reaper = time.AfterFunc(idleStreamTimeout, c.reap)
	default:
		c.reaper.Reset(idleStreamTimeout)
	}
	c.mu.Unlock()
}

// reap resets the streams idle for idleStreamTimeout and waits for the
// next one to be.
func (c *Client) reap() {
	c.mu.Lock()
	now := time.Now()
	n := 0
	for n < len(c.idle) && now.Sub(c.idle[n].since) >= idleStreamTimeout {
		n++
	}
	old := slices.Clone(c.idle[:n])
	c.idle = slices.Delete(c.idle, 0, n)
	if len(c.idle) > 0 {
		c.reaper.Reset(idleStreamTimeout - now.Sub(c.idle[0].since))
	}
	c.mu.Unlock()
	for _, st := range old {
		st.reset()
	}
}

// flush resets every idle stream.
func (c *Client) flush() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, st := range idle {
		st.reset()
	}
}

// streamErr turns the io.EOF that Send returns on a failed stream into the
// stream's status.
func streamErr(s grpc.ClientStream, err error) error {
	if err != io.EOF {
		return err
	}
	if rerr := s.RecvMsg(new(pb.Frame)); rerr != nil && rerr != io.EOF {
		return rerr
	}
	return err
}

// Flow is the daemon's end of one flow. Send and CloseWrite belong to one
// goroutine, Recv to another (gRPC allows one sender and one receiver).
type Flow struct {
	stream grpc.BidiStreamingClient[pb.Frame, pb.Frame]
	reset  context.CancelFunc // resets the stream
	// A Tunnel flow's stream goes back to pool after a clean end, unless
	// the flow's context has reset it: unwatch tells.
	pool      *Client
	unwatch   func() bool
	eof, done bool     // the manager half-closed; it ended the flow (DONE)
	out       pb.Frame // reused by Send
	in        pb.Frame // reused by Recv
}

// Send sends b as one data frame; it blocks while the stream's window is
// full.
func (f *Flow) Send(b []byte) error {
	f.out.Data = b
	err := f.stream.Send(&f.out)
	f.out.Data = nil
	return err
}

// Recv returns the next data; io.EOF once the manager half-closed.
func (f *Flow) Recv() ([]byte, error) {
	for !f.eof {
		if err := f.stream.RecvMsg(&f.in); err != nil {
			if err == io.EOF {
				// The handler returned OK without an EOF frame: nothing
				// more comes.
				f.eof = true
				break
			}
			return nil, err
		}
		switch f.in.Control {
		case pb.Control_EOF:
			f.eof = true
		case pb.Control_DONE:
			f.eof, f.done = true, true
		}
		if len(f.in.Data) > 0 {
			return f.in.Data, nil
		}
	}
	return nil, io.EOF
}

// CloseWrite half-closes the flow toward the destination.
func (f *Flow) CloseWrite() error {
	if f.pool == nil {
		return f.stream.CloseSend()
	}
	f.out.Control = pb.Control_EOF
	err := f.stream.Send(&f.out)
	f.out.Control = pb.Control_CONTROL_NONE
	return err
}

// Close ends the flow. Without reset it first waits for the manager to
// confirm that everything reached the destination: DONE, after which the
// stream carries the next flow, or the end of the stream.
func (f *Flow) Close(reset bool) {
	if !reset {
		for !f.done && f.stream.RecvMsg(&f.in) == nil {
			f.done = f.in.Control == pb.Control_DONE
		}
	}
	// A pooled flow (unwatch set) goes back to the pool unless its context
	// reset the stream (unwatch false).
	if f.unwatch != nil && f.unwatch() && !reset && f.done {
		f.pool.put(&idleStream{stream: f.stream, reset: f.reset})
		return
	}
	f.reset()
}

// Answer opens the daemon's end of an inbound flow the manager announced
// (flowID). It first claims the flow, and only when the manager confirms
// that the flow still waits does it call dial, which dials the local port
// and says whether it accepted: a flow whose agent gave up never reaches
// the local app. With a non-OK answer from dial, Answer returns no Flow.
func (c *Client) Answer(ctx context.Context, flowID string, dial func() *pb.Opened) (*Flow, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.mgr.InboundTunnel(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open inbound stream: %w", err)
	}
	f := &Flow{stream: stream, reset: cancel}
	f.out.Open = &pb.OpenFlow{FlowId: flowID}
	err = stream.Send(&f.out)
	f.out.Open = nil
	if err == nil {
		err = stream.RecvMsg(&f.in)
	}
	if err == nil && f.in.Opened.GetStatus() != pb.OpenStatus_OPEN_OK {
		err = errors.New("the manager did not confirm the flow")
	}
	if err != nil {
		f.Close(true)
		return nil, fmt.Errorf("claim inbound flow: %w", streamErr(stream, err))
	}
	opened := dial()
	f.out.Opened = opened
	err = stream.Send(&f.out)
	f.out.Opened = nil
	if err != nil || opened.GetStatus() != pb.OpenStatus_OPEN_OK {
		f.Close(err != nil)
		if err != nil {
			return nil, fmt.Errorf("answer inbound flow: %w", streamErr(stream, err))
		}
		return nil, nil
	}
	return f, nil
}

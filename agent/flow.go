package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"

	pb "github.com/tether-dev/tether/rpc/manager"
)

// This file is the agent's end of AgentTunnel: the same protocol as
// tunnel.Client and tunnel.Conn (see the tunnel package for the close
// rules), opened with an intercept id instead of a destination.

const (
	// chunkSize is the most one Write sends in one frame.
	chunkSize = 128 << 10
	// finishTimeout bounds how long a clean close waits for the manager's
	// final status.
	finishTimeout = 10 * time.Second
)

// openError is a flow that did not open. Nothing was sent through it, so the
// caller may send the traffic elsewhere.
type openError struct {
	intercept string
	err       error
}

func (e *openError) Error() string {
	return fmt.Sprintf("open flow for intercept %s: %v", e.intercept, e.err)
}

func (e *openError) Unwrap() error { return e.err }

// refusedError is the manager's negative Opened answer.
type refusedError struct {
	status pb.OpenStatus
	msg    string
}

func (e *refusedError) Error() string { return fmt.Sprintf("%s: %s", e.status, e.msg) }

// open opens one flow to the owner of intercept id. ctx bounds the open
// only: the flow lives until it is closed or the agent stops.
func (a *Agent) open(ctx context.Context, id, source string) (*flowConn, error) {
	fctx, cancel := context.WithCancel(a.withCreds(a.life))
	// Both bounds are armed before the call: a manager still connecting
	// blocks the call itself.
	timer := time.AfterFunc(a.cfg.OpenTimeout, cancel)
	stop := context.AfterFunc(ctx, cancel)
	var timedOut, gone, halted bool
	halt := func() bool { // disarms both bounds; true if one fired
		if !halted {
			halted, timedOut, gone = true, !timer.Stop(), !stop()
		}
		return timedOut || gone
	}
	fail := func(err error) (*flowConn, error) {
		halt()
		cancel()
		switch {
		case timedOut:
			err = fmt.Errorf("manager did not answer within %s", a.cfg.OpenTimeout)
		case gone:
			err = context.Cause(ctx)
		}
		return nil, &openError{intercept: id, err: err}
	}
	stream, err := a.mgr.AgentTunnel(fctx)
	if err != nil {
		return fail(err)
	}
	open := &pb.Frame{Open: &pb.OpenFlow{Protocol: pb.Protocol_TCP, InterceptId: id, Source: source}}
	if err := stream.Send(open); err != nil {
		return fail(streamErr(stream, err))
	}
	var first pb.Frame
	if err := stream.RecvMsg(&first); err != nil {
		if err == io.EOF {
			err = errors.New("manager ended the flow without an answer")
		}
		return fail(err)
	}
	switch {
	case first.Opened == nil:
		return fail(errors.New("manager sent no Opened frame"))
	case first.Opened.Status != pb.OpenStatus_OPEN_OK:
		return fail(&refusedError{status: first.Opened.Status, msg: first.Opened.Error})
	}
	if halt() {
		return fail(nil) // a bound fired as the answer came: the stream is gone
	}
	return &flowConn{stream: stream, cancel: cancel, local: a.ln.Addr(), remote: flowAddr(id)}, nil
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

// flowConn presents an open flow as a net.Conn with half-close, for
// tunnel.Splice and for HTTP transports. Read belongs to one goroutine,
// Write and CloseWrite to another; Close and Finish may come from any.
// Close resets the flow, Finish ends it cleanly. Deadlines are not
// supported: the agent's life bounds the flow.
type flowConn struct {
	stream        grpc.BidiStreamingClient[pb.Frame, pb.Frame]
	cancel        context.CancelFunc
	local, remote net.Addr

	in   pb.Frame // reused by Read
	rest []byte   // received, not yet read
	eof  bool     // the manager half-closed
	out  pb.Frame // reused by Write

	closeOnce sync.Once
}

// Read implements net.Conn; io.EOF once the manager half-closed.
func (c *flowConn) Read(p []byte) (int, error) {
	for len(c.rest) == 0 {
		if c.eof {
			return 0, io.EOF
		}
		if err := c.stream.RecvMsg(&c.in); err != nil {
			return 0, err // io.EOF: the manager ended the flow with OK
		}
		c.rest, c.eof = c.in.Data, c.in.Control == pb.Control_EOF
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

// Write implements net.Conn.
func (c *flowConn) Write(p []byte) (int, error) {
	for sent := 0; sent < len(p); {
		n := min(len(p)-sent, chunkSize)
		c.out.Data = p[sent : sent+n]
		err := c.stream.Send(&c.out)
		c.out.Data = nil
		if err != nil {
			return sent, err
		}
		sent += n
	}
	return len(p), nil
}

// CloseWrite half-closes the flow toward the developer.
func (c *flowConn) CloseWrite() error { return c.stream.CloseSend() }

// Close resets the flow.
func (c *flowConn) Close() error {
	c.closeOnce.Do(c.cancel)
	return nil
}

// Finish ends the flow cleanly after both sides half-closed: it waits, a
// bounded time, for the manager's confirmation that everything arrived.
func (c *flowConn) Finish() {
	c.closeOnce.Do(func() {
		t := time.AfterFunc(finishTimeout, c.cancel)
		var sink pb.Frame
		for c.stream.RecvMsg(&sink) == nil {
		}
		t.Stop()
		c.cancel()
	})
}

func (c *flowConn) LocalAddr() net.Addr              { return c.local }
func (c *flowConn) RemoteAddr() net.Addr             { return c.remote }
func (c *flowConn) SetDeadline(time.Time) error      { return errNoDeadline }
func (c *flowConn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (c *flowConn) SetWriteDeadline(time.Time) error { return errNoDeadline }

var errNoDeadline = errors.New("agent flow: deadlines are not supported")

// flowAddr names the far end of a flow: the owner of an intercept.
type flowAddr string

func (a flowAddr) Network() string { return "tether-intercept" }
func (a flowAddr) String() string  { return string(a) }

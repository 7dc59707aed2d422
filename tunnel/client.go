package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
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

// Client opens flows through a manager. The caller's context carries the
// session credentials (see the manager package).
type Client struct {
	mgr         pb.ManagerClient
	openTimeout time.Duration
}

// NewClient returns a Client over cc. openTimeout 0 means DefaultOpenTimeout.
func NewClient(cc grpc.ClientConnInterface, openTimeout time.Duration) *Client {
	if openTimeout == 0 {
		openTimeout = DefaultOpenTimeout
	}
	return &Client{mgr: pb.NewManagerClient(cc), openTimeout: openTimeout}
}

// Open asks the manager to open a flow to dst and waits for its answer.
// ctx bounds the life of the flow.
func (c *Client) Open(ctx context.Context, proto pb.Protocol, src, dst netip.AddrPort) (*Flow, error) {
	return c.open(ctx, c.mgr.Tunnel, &pb.OpenFlow{Protocol: proto, Source: src.String(), Destination: dst.String()})
}

// OpenIntercept is the agent's open: a flow to the owner of intercept id,
// answered once the owner's daemon has dialed its local port. ctx bounds the
// life of the flow.
func (c *Client) OpenIntercept(ctx context.Context, id, source string) (*Flow, error) {
	return c.open(ctx, c.mgr.AgentTunnel, &pb.OpenFlow{Protocol: pb.Protocol_TCP, InterceptId: id, Source: source})
}

type streamCall func(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[pb.Frame, pb.Frame], error)

func (c *Client) open(ctx context.Context, call streamCall, open *pb.OpenFlow) (*Flow, error) {
	ctx, cancel := context.WithCancel(ctx)
	// The timeout is armed before the call: a manager still connecting
	// blocks the call itself.
	timer := time.AfterFunc(c.openTimeout, cancel)
	fail := func(err error) (*Flow, error) {
		cancel()
		if !timer.Stop() {
			return nil, &OpenError{Status: pb.OpenStatus_OPEN_UNREACHABLE, Msg: fmt.Sprintf("manager did not answer within %s", c.openTimeout)}
		}
		return nil, err
	}
	stream, err := call(ctx)
	if err != nil {
		return fail(fmt.Errorf("open stream: %w", err))
	}
	f := &Flow{stream: stream, cancel: cancel}
	f.out.Open = open
	err = stream.Send(&f.out)
	f.out.Open = nil
	if err != nil {
		return fail(fmt.Errorf("send open: %w", streamErr(stream, err)))
	}
	if err := stream.RecvMsg(&f.in); err != nil {
		if err == io.EOF {
			err = errors.New("manager ended the flow without an answer")
		}
		return fail(fmt.Errorf("open: %w", err))
	}
	switch {
	case f.in.Opened == nil:
		return fail(errors.New("open: manager sent no Opened frame"))
	case f.in.Opened.Status != pb.OpenStatus_OPEN_OK:
		return fail(&OpenError{Status: f.in.Opened.Status, Msg: f.in.Opened.Error})
	case !timer.Stop():
		return fail(nil) // the timeout fired as the answer came: the stream is gone
	}
	return f, nil
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
	cancel context.CancelFunc
	out    pb.Frame // reused by Send
	in     pb.Frame // reused by Recv
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
	for {
		if err := f.stream.RecvMsg(&f.in); err != nil {
			if err == io.EOF {
				// The handler returned OK without an EOF frame: nothing
				// more comes.
				return nil, io.EOF
			}
			return nil, err
		}
		if len(f.in.Data) > 0 {
			return f.in.Data, nil
		}
		if f.in.Control == pb.Control_EOF {
			return nil, io.EOF
		}
	}
}

// CloseWrite half-closes the flow toward the destination.
func (f *Flow) CloseWrite() error { return f.stream.CloseSend() }

// Close ends the flow. Without reset it first waits for the manager to
// confirm that everything reached the destination.
func (f *Flow) Close(reset bool) {
	if !reset {
		var sink pb.Frame
		for f.stream.RecvMsg(&sink) == nil {
		}
	}
	f.cancel()
}

// Answer opens the daemon's end of an inbound flow the manager announced
// (flowID). With a non-OK opened, the daemon refuses it (its local port did
// not accept) and Answer returns no Flow.
func (c *Client) Answer(ctx context.Context, flowID string, opened *pb.Opened) (*Flow, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.mgr.InboundTunnel(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open inbound stream: %w", err)
	}
	f := &Flow{stream: stream, cancel: cancel}
	f.out.Open, f.out.Opened = &pb.OpenFlow{FlowId: flowID}, opened
	err = stream.Send(&f.out)
	f.out.Open, f.out.Opened = nil, nil
	if err != nil || opened.GetStatus() != pb.OpenStatus_OPEN_OK {
		f.Close(err != nil)
		if err != nil {
			return nil, fmt.Errorf("answer inbound flow: %w", streamErr(stream, err))
		}
		return nil, nil
	}
	return f, nil
}

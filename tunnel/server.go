package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/internal/goroutines"
	"github.com/tether-dev/tether/internal/idle"
	pb "github.com/tether-dev/tether/rpc/manager"
)

// Defaults of the server side.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultUDPIdleTimeout = 60 * time.Second
)

// Server is the manager's end: it dials destinations and pipes flows.
type Server struct {
	dialTimeout time.Duration
	udpIdle     time.Duration
	log         *slog.Logger

	// flows counts Serve calls (one per stream), their receivers, which
	// may outlive their handler by a moment (until the stream's end reaches
	// their Recv), and the goroutines started with Go. Close waits for them.
	flows goroutines.Group
}

// NewServer returns a Server; zero durations mean the defaults.
func NewServer(dialTimeout, udpIdle time.Duration, log *slog.Logger) *Server {
	if dialTimeout == 0 {
		dialTimeout = DefaultDialTimeout
	}
	if udpIdle == 0 {
		udpIdle = DefaultUDPIdleTimeout
	}
	return &Server{dialTimeout: dialTimeout, udpIdle: udpIdle, log: log.With("component", "tunnel")}
}

// Close refuses new streams (Serve) and goroutines (Go) and waits for every
// goroutine of the others, which the caller has ended (through Serve's
// context).
func (s *Server) Close() {
	s.flows.Close()
	s.flows.Wait()
}

// Go runs f in a goroutine that Close waits for, unless the server is
// closed already; it reports whether f runs.
func (s *Server) Go(f func()) bool { return s.flows.Go(f) }

// A Limiter bounds the flows of the streams that share it; the manager
// gives each session one for all of its streams. Refusals and evictions
// are the Limiter's to log.
type Limiter interface {
	// AdmitStream admits a stream, whose end is StreamDone, or refuses
	// it with a reason for the daemon: streams waiting for a flow cost
	// the manager two goroutines each, and only the daemon bounds them.
	AdmitStream() (refusal string, ok bool)
	StreamDone()
	// AdmitTCP admits a live TCP flow, whose end is TCPDone, or refuses
	// it with a reason for the daemon.
	AdmitTCP() (refusal string, ok bool)
	TCPDone()
	// UDP admits a UDP flow, which end ends early (a newer flow took its
	// place). touch marks a datagram either way, done says it ended.
	UDP(end func()) (touch, done func())
}

// Unlimited is the Limiter that admits everything.
type Unlimited struct{}

// AdmitStream implements Limiter.
func (Unlimited) AdmitStream() (string, bool) { return "", true }

// StreamDone implements Limiter.
func (Unlimited) StreamDone() {}

// AdmitTCP implements Limiter.
func (Unlimited) AdmitTCP() (string, bool) { return "", true }

// TCPDone implements Limiter.
func (Unlimited) TCPDone() {}

// UDP implements Limiter.
func (Unlimited) UDP(func()) (func(), func()) { return func() {}, func() {} }

// Stream is the server side of a Tunnel call.
type Stream = grpc.BidiStreamingServer[pb.Frame, pb.Frame]

// Serve runs the flows of one Tunnel stream, one after another, until the
// daemon closes the stream, a flow is reset, or a UDP flow ends. allowed
// decides which destinations the caller may reach, lim how many flows it
// may have. When ctx ends (the session ended, the manager shuts down) the
// stream is reset with status Unavailable.
func (s *Server) Serve(ctx context.Context, stream Stream, allowed func(netip.Addr) bool, lim Limiter) error {
	if !s.flows.Add() {
		return errEnded
	}
	defer s.flows.Done()
	if refusal, ok := lim.AdmitStream(); !ok {
		return status.Error(codes.ResourceExhausted, refusal)
	}
	defer lim.StreamDone()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(stream.Context(), cancel)()
	rx := newReceiver(stream)
	if !s.flows.Go(rx.run) {
		return errEnded
	}
	defer rx.stop()
	for {
		first, err := rx.next(ctx)
		if err == io.EOF {
			return nil // the daemon retired the stream between flows
		}
		if err != nil {
			return err
		}
		more, err := s.serveFlow(ctx, stream, rx, first, allowed, lim)
		if err != nil || !more {
			return err
		}
	}
}

// serveFlow runs the flow whose first frame is first. It reports whether
// the stream may carry another flow.
func (s *Server) serveFlow(ctx context.Context, stream Stream, rx *receiver, first *pb.Frame, allowed func(netip.Addr) bool, lim Limiter) (bool, error) {
	open := first.GetOpen()
	if open == nil {
		return false, status.Error(codes.InvalidArgument, "first frame must open the flow")
	}
	dst, err := netip.ParseAddrPort(open.Destination)
	if err != nil {
		return false, status.Errorf(codes.InvalidArgument, "bad destination %q: %v", open.Destination, err)
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	var network string
	switch open.Protocol {
	case pb.Protocol_TCP:
		network = "tcp"
	case pb.Protocol_UDP:
		network = "udp"
	default:
		return false, status.Errorf(codes.InvalidArgument, "unknown protocol %v", open.Protocol)
	}
	// A flow that does not open leaves the stream clean for the next one.
	refuse := func(st pb.OpenStatus, msg string) (bool, error) {
		rx.feed(nil)
		return true, stream.Send(&pb.Frame{Opened: &pb.Opened{Status: st, Error: msg}})
	}
	if !allowed(dst.Addr()) {
		return refuse(pb.OpenStatus_OPEN_FORBIDDEN, fmt.Sprintf("%s is outside the cluster subnets", dst.Addr()))
	}
	if network == "tcp" {
		refusal, ok := lim.AdmitTCP()
		if !ok {
			return refuse(pb.OpenStatus_OPEN_FORBIDDEN, refusal)
		}
		defer lim.TCPDone()
	}
	dialCtx, dialCancel := context.WithTimeout(ctx, s.dialTimeout)
	conn, err := dial(dialCtx, network, dst)
	// The dialer puts dialCtx's deadline on the socket, which may fire
	// before dialCtx's own timer: the error, not dialCtx, says it timed out.
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() && ctx.Err() == nil {
		err = fmt.Errorf("%w (no answer within %s)", err, s.dialTimeout)
	}
	dialCancel()
	if err != nil {
		st := pb.OpenStatus_OPEN_UNREACHABLE
		if errors.Is(err, syscall.ECONNREFUSED) {
			st = pb.OpenStatus_OPEN_REFUSED
		}
		s.log.Debug("dial failed", "flow", open.Source+"->"+open.Destination, "error", err)
		return refuse(st, err.Error())
	}
	if err := stream.Send(&pb.Frame{Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_OK}}); err != nil {
		conn.Close()
		return false, err
	}
	if network == "udp" {
		return false, s.pipeUDP(ctx, stream, rx, conn.(*net.UDPConn), lim)
	}
	tc := conn.(*net.TCPConn)
	tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true}) // Go's defaults: 15 s idle and interval, 9 probes
	return pipeTCP(ctx, stream, rx, tc)
}

// dial connects to dst from the manager's network. Keep-alive is left to
// the caller, once the daemon's answer is on its way: four syscalls a
// connect need not wait for. (Not Dialer.DialTCP with a zero local
// address: that binds to port 0 before connecting, a search of the port
// space that grew with the TIME_WAIT sockets to 80 % of the manager's CPU.)
func dial(ctx context.Context, network string, dst netip.AddrPort) (net.Conn, error) {
	return (&net.Dialer{KeepAlive: -1}).DialContext(ctx, network, dst.String())
}

// errEnded is the status of flows ended by their context.
var errEnded = status.Error(codes.Unavailable, "flow ended by the traffic manager (session ended or shutting down)")

// errLastFlow is what the daemon-to-destination half of a flow returns when
// the daemon half-closed with CloseSend: the flow ends cleanly, and it is
// the stream's last.
var errLastFlow = errors.New("the daemon closed the stream")

// receiver makes every Recv of one stream, in one goroutine for the
// stream's life. Between flows, only returning from the handler ends a
// server stream's Recv, so a daemon that sends nothing must not hold the
// handler there (it must give way to its context); during a flow the
// receiver runs the daemon-to-destination half. A flow on a stream that
// carried one before thus starts no goroutine.
type receiver struct {
	stream Stream
	frames chan received     // each flow's first frame, for the handler
	sinks  chan func() error // what consumes the rest of that flow, or nil
	done   chan error        // the sink's result
	quit   chan struct{}     // closed when the handler returns
}

type received struct {
	f   *pb.Frame
	err error
}

func newReceiver(stream Stream) *receiver {
	return &receiver{stream: stream, frames: make(chan received), sinks: make(chan func() error),
		done: make(chan error, 1), quit: make(chan struct{})}
}

func (r *receiver) run() {
	for {
		f := new(pb.Frame)
		err := r.stream.RecvMsg(f)
		select {
		case r.frames <- received{f, err}:
		case <-r.quit:
			return
		}
		if err != nil {
			return
		}
		var sink func() error
		select {
		case sink = <-r.sinks:
		case <-r.quit:
			return
		}
		if sink == nil {
			continue
		}
		err = sink()
		r.done <- err // buffered: the handler may have returned
		if err != nil {
			return
		}
	}
}

// next returns the next flow's first frame; errEnded once ctx ends.
func (r *receiver) next(ctx context.Context) (*pb.Frame, error) {
	select {
	case got := <-r.frames:
		return got.f, got.err
	case <-ctx.Done():
		return nil, errEnded
	}
}

// feed hands the receiver what consumes the flow that next returned; nil
// when that flow did not open. The receiver waits for it.
func (r *receiver) feed(sink func() error) { r.sinks <- sink }

func (r *receiver) stop() { close(r.quit) }

// pipeTCP runs a TCP flow: this goroutine forwards what the destination
// sends, the receiver what the daemon sends. It reports whether the stream
// may carry another flow.
func pipeTCP(ctx context.Context, stream Stream, rx *receiver, conn *net.TCPConn) (bool, error) {
	// Linger 0 makes Close send an RST to the destination; closing also
	// ends either half's wait on conn.
	abort := func() { reset(conn) }
	stop := context.AfterFunc(ctx, abort)
	defer stop()
	rx.feed(func() error {
		err := tcpFromDaemon(stream, conn)
		if err != nil && err != errLastFlow {
			abort()
		}
		return err
	})
	err := tcpToDaemon(stream, conn)
	var fromErr error
	sentEOF := false
	if err == nil {
		select {
		case fromErr = <-rx.done:
		default:
			// The daemon still sends: half-close toward it and wait.
			sentEOF = true
			if err = stream.Send(&pb.Frame{Control: pb.Control_EOF}); err == nil {
				select {
				case fromErr = <-rx.done:
				case <-ctx.Done():
					err = ctx.Err()
				}
			}
		}
	}
	last := fromErr == errLastFlow
	if last {
		fromErr = nil
	}
	if err == nil && fromErr == nil && stop() {
		if err := conn.Close(); err != nil {
			return false, err
		}
		if last {
			// The daemon ended the stream with CloseSend: EOF, then the handler's OK.
			if !sentEOF {
				return false, stream.Send(&pb.Frame{Control: pb.Control_EOF})
			}
			return false, nil
		}
		return true, stream.Send(&pb.Frame{Control: pb.Control_DONE})
	}
	// Either end was reset, or ctx ended: reset the other. Returning an
	// error status resets the daemon's side.
	abort()
	switch {
	case stream.Context().Err() != nil || status.Code(fromErr) == codes.Canceled:
		return false, status.Error(codes.Canceled, "flow reset by the client")
	case ctx.Err() != nil:
		return false, errEnded
	case fromErr == nil && errors.Is(err, net.ErrClosed):
		// Only the receiver closes conn besides ctx: its error says why.
		fromErr = <-rx.done
	}
	switch {
	case status.Code(fromErr) == codes.InvalidArgument:
		return false, fromErr
	case fromErr != nil && fromErr != errLastFlow:
		err = fromErr
	}
	return false, status.Errorf(codes.Aborted, "connection reset: %v", err)
}

// tcpToDaemon forwards what conn sends until its EOF (nil) or an error.
func tcpToDaemon(stream Stream, conn *net.TCPConn) error {
	for {
		bp, n, err := readPooled(conn)
		if n > 0 {
			serr := stream.Send(&pb.Frame{Data: (*bp)[:n]})
			chunkPool.Put(bp)
			if serr != nil {
				return serr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// tcpFromDaemon forwards what the daemon sends until its EOF, which
// half-closes conn.
func tcpFromDaemon(stream Stream, conn *net.TCPConn) error {
	var f pb.Frame
	for {
		if err := stream.RecvMsg(&f); err != nil {
			if err == io.EOF {
				if err := conn.CloseWrite(); err != nil {
					return err
				}
				return errLastFlow
			}
			return err
		}
		if f.Open != nil || f.Opened != nil || f.Control == pb.Control_DONE {
			return status.Error(codes.InvalidArgument, "unexpected frame in an open flow")
		}
		if _, err := conn.Write(f.Data); err != nil {
			return err
		}
		if f.Control == pb.Control_EOF {
			return conn.CloseWrite()
		}
	}
}

// pipeUDP forwards datagrams both ways until the flow has been idle for the
// idle timeout or either side fails; this goroutine forwards the
// destination's, the receiver the daemon's. A UDP flow just ends, whatever
// the reason (the stream with it): the daemon opens a new one with the next
// datagram.
func (s *Server) pipeUDP(ctx context.Context, stream Stream, rx *receiver, conn *net.UDPConn, lim Limiter) error {
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	use, done := lim.UDP(cancel)
	defer done()
	timer := idle.New(s.udpIdle, cancel)
	defer timer.Stop()
	// A deadline in the past is what ends a Read blocked in the kernel.
	defer context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })()
	rx.feed(func() error {
		defer cancel()
		var f pb.Frame
		for {
			if err := stream.RecvMsg(&f); err != nil {
				return err
			}
			timer.Touch()
			use()
			if _, err := conn.Write(f.Data); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				return err
			}
		}
	})
	buf := make([]byte, 65535)
	for {
		n, err := conn.Read(buf)
		if errors.Is(err, syscall.ECONNREFUSED) {
			continue // ICMP port unreachable for an earlier datagram
		}
		if err != nil {
			return nil
		}
		timer.Touch()
		use()
		if stream.Send(&pb.Frame{Data: buf[:n]}) != nil {
			return nil
		}
	}
}

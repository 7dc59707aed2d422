package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

	// strays counts flows and the copy goroutines that may outlive their
	// handler by a moment after a reset (a Send blocked on a window that the
	// handler's return releases). Close waits for them.
	strays sync.WaitGroup
	// mu guards closed, so that no flow starts once Close waits.
	mu     sync.Mutex
	closed bool
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

// Close refuses new flows and waits for every goroutine of the others,
// which the caller has ended (through Serve's context).
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.strays.Wait()
}

// Go runs f in a goroutine that Close waits for, unless the server is
// closed already; it reports whether f runs.
func (s *Server) Go(f func()) bool {
	if !s.track() {
		return false
	}
	go func() {
		defer s.strays.Done()
		f()
	}()
	return true
}

// track counts a new flow unless the server is closed.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.strays.Add(1)
	return true
}

// Stream is the server side of a Tunnel call.
type Stream = grpc.BidiStreamingServer[pb.Frame, pb.Frame]

// Serve runs one flow to its end. allowed decides which destinations the
// caller may reach. When ctx ends (the session ended, the manager shuts
// down) the flow is reset with status Unavailable.
func (s *Server) Serve(ctx context.Context, stream Stream, allowed func(netip.Addr) bool) error {
	if !s.track() {
		return errEnded
	}
	defer s.strays.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(stream.Context(), cancel)
	defer stop()
	first, err := s.recvFirst(ctx, stream)
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return status.Error(codes.InvalidArgument, "first frame must open the flow")
	}
	dst, err := netip.ParseAddrPort(open.Destination)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "bad destination %q: %v", open.Destination, err)
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	var network string
	switch open.Protocol {
	case pb.Protocol_TCP:
		network = "tcp"
	case pb.Protocol_UDP:
		network = "udp"
	default:
		return status.Errorf(codes.InvalidArgument, "unknown protocol %v", open.Protocol)
	}
	if !allowed(dst.Addr()) {
		return stream.Send(&pb.Frame{Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_FORBIDDEN,
			Error: fmt.Sprintf("%s is outside the cluster subnets", dst.Addr())}})
	}
	dialCtx, dialCancel := context.WithTimeout(ctx, s.dialTimeout)
	conn, err := (&net.Dialer{}).DialContext(dialCtx, network, dst.String())
	dialCancel()
	if err != nil {
		st := pb.OpenStatus_OPEN_UNREACHABLE
		if errors.Is(err, syscall.ECONNREFUSED) {
			st = pb.OpenStatus_OPEN_REFUSED
		}
		s.log.Debug("dial failed", "flow", open.Source+"->"+open.Destination, "error", err)
		return stream.Send(&pb.Frame{Opened: &pb.Opened{Status: st, Error: err.Error()}})
	}
	if err := stream.Send(&pb.Frame{Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_OK}}); err != nil {
		conn.Close()
		return err
	}
	if network == "udp" {
		return s.pipeUDP(ctx, stream, conn.(*net.UDPConn))
	}
	return s.pipeTCP(ctx, stream, conn.(*net.TCPConn))
}

// recvFirst receives the daemon's first frame, or returns errEnded once ctx
// ends: a daemon that opened the stream and sends nothing must not hold up
// Close. Only returning from the handler ends a server stream's Recv, so
// that Recv runs beside it and returns when the handler has.
func (s *Server) recvFirst(ctx context.Context, stream Stream) (*pb.Frame, error) {
	type result struct {
		f   *pb.Frame
		err error
	}
	c := make(chan result, 1)
	s.strays.Add(1)
	go func() {
		defer s.strays.Done()
		f, err := stream.Recv()
		c <- result{f, err}
	}()
	select {
	case r := <-c:
		return r.f, r.err
	case <-ctx.Done():
		return nil, errEnded
	}
}

// errEnded is the status of flows ended by their context.
var errEnded = status.Error(codes.Unavailable, "flow ended by the traffic manager (session ended or shutting down)")

func (s *Server) pipeTCP(ctx context.Context, stream Stream, conn *net.TCPConn) error {
	errc := make(chan error, 2)
	s.strays.Add(2)
	go func() {
		defer s.strays.Done()
		errc <- tcpToDaemon(stream, conn)
	}()
	go func() {
		defer s.strays.Done()
		errc <- tcpFromDaemon(stream, conn)
	}()
	for range 2 {
		var err error
		select {
		case err = <-errc:
		case <-ctx.Done():
			if stream.Context().Err() == nil {
				conn.SetLinger(0)
				conn.Close()
				return errEnded
			}
			err = ctx.Err()
		}
		if err != nil {
			// Either end was reset: reset the other. Linger 0 makes Close
			// send an RST to the destination; returning an error status
			// resets the daemon's side.
			conn.SetLinger(0)
			conn.Close()
			if status.Code(err) == codes.Canceled || stream.Context().Err() != nil {
				return status.Error(codes.Canceled, "flow reset by the client")
			}
			return status.Errorf(codes.Aborted, "connection reset: %v", err)
		}
	}
	return conn.Close()
}

func tcpToDaemon(stream Stream, conn *net.TCPConn) error {
	for {
		bp, n, err := readPooled(conn)
		if n > 0 {
			serr := stream.Send(&pb.Frame{Data: (*bp)[:n]})
			chunkPool.Put(bp)
			if serr != nil {
				return serr
			}
		} else if bp != nil {
			chunkPool.Put(bp)
		}
		if err == io.EOF {
			return stream.Send(&pb.Frame{Control: pb.Control_EOF})
		}
		if err != nil {
			return err
		}
	}
}

func tcpFromDaemon(stream Stream, conn *net.TCPConn) error {
	var f pb.Frame
	for {
		if err := stream.RecvMsg(&f); err != nil {
			if err == io.EOF {
				return conn.CloseWrite()
			}
			return err
		}
		if _, err := conn.Write(f.Data); err != nil {
			return err
		}
	}
}

// pipeUDP forwards datagrams both ways until the flow has been idle for the
// idle timeout or either side fails.
func (s *Server) pipeUDP(ctx context.Context, stream Stream, conn *net.UDPConn) error {
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := idle.New(s.udpIdle, cancel)
	defer timer.Stop()
	// A deadline in the past is what ends a Read blocked in the kernel.
	defer context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })()

	s.strays.Add(2)
	go func() {
		defer s.strays.Done()
		defer cancel()
		buf := make([]byte, 65535)
		for {
			n, err := conn.Read(buf)
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // ICMP port unreachable for an earlier datagram
			}
			if err != nil {
				return
			}
			timer.Touch()
			if stream.Send(&pb.Frame{Data: buf[:n]}) != nil {
				return
			}
		}
	}()
	go func() {
		defer s.strays.Done()
		defer cancel()
		var f pb.Frame
		for {
			if stream.RecvMsg(&f) != nil {
				return
			}
			timer.Touch()
			if _, err := conn.Write(f.Data); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				return
			}
		}
	}()
	// Returning ends the stream, which releases a goroutine blocked in it.
	// A UDP flow just ends, whatever the reason: the daemon opens a new one
	// with the next datagram.
	<-ctx.Done()
	return nil
}

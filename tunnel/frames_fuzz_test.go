package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tether-dev/tether/internal/netlab"
	pb "github.com/tether-dev/tether/rpc/manager"
)

// fuzzWait bounds every wait in these fuzzers; a flow that takes longer
// hangs.
const fuzzWait = 5 * time.Second

// FuzzTunnelFrames feeds arbitrary frames from a daemon to Server.Serve
// through an in-memory stream. Destinations in 127.0.0.0/8 go to echo
// servers of this process (the port picks TCP echo, UDP echo or a closed
// port), so the fuzzer never reaches other programs. Serve must return,
// without panic, within a bounded time after its context ends; it must
// answer a valid open with exactly one Opened frame before anything else;
// and a TCP echo flow that the daemon half-closes must come back intact.
//
// The input is a mode byte (see frameMode) and frames, each a protobuf
// Frame prefixed with its length as a uvarint; a length past the end takes
// the rest; bytes that do not unmarshal make Recv fail as gRPC does.
func FuzzTunnelFrames(f *testing.F) {
	echo := startEchoServers(f)
	for _, s := range serverSeeds() {
		f.Add(byte(s.mode), joinFrames(s.frames...))
	}
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		runServerInput(t, echo, frameMode(mode), splitFrames(data))
	})
}

// frameMode says how the daemon's side behaves after its frames.
type frameMode byte

const (
	// endHalfClose: Recv returns io.EOF (CloseSend).
	endHalfClose frameMode = iota
	// endReset: Recv fails with Canceled, as when the daemon cancels.
	endReset
	// endSessionEnds: Recv blocks; the session's context ends soon.
	endSessionEnds
	// endHold: Recv blocks until Serve's context times out.
	endHold
)

func (m frameMode) end() frameMode { return m % 4 }

// echoServers are a TCP and a UDP echo server on loopback and a port on
// which nothing listens.
type echoServers struct {
	tcp, udp, closed uint16
}

func startEchoServers(tb testing.TB) echoServers {
	tb.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	closed, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	closedPort := uint16(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()

	tb.Cleanup(netlab.ServeEcho(ln))
	tb.Cleanup(netlab.ServeUDPEcho(pc))
	return echoServers{
		tcp:    uint16(ln.Addr().(*net.TCPAddr).Port),
		udp:    uint16(pc.LocalAddr().(*net.UDPAddr).Port),
		closed: closedPort,
	}
}

var loopback = netip.MustParsePrefix("127.0.0.0/8")

// route points a destination in 127.0.0.0/8 at one of the echo servers,
// keeping the address as the fuzzer spelled it; others stay as they are.
func (e echoServers) route(dst string) string {
	ap, err := netip.ParseAddrPort(dst)
	if err != nil || !loopback.Contains(ap.Addr().Unmap()) {
		return dst
	}
	port := [3]uint16{e.tcp, e.udp, e.closed}[ap.Port()%3]
	return netip.AddrPortFrom(ap.Addr(), port).String()
}

// runServerInput serves one flow of frames and checks what Serve did.
func runServerInput(t *testing.T, echo echoServers, mode frameMode, frames []fuzzFrame) {
	baseline := runtime.NumGoroutine()
	for _, fr := range frames {
		if fr.msg != nil && fr.msg.Open != nil {
			fr.msg.Open.Destination = echo.route(fr.msg.Open.Destination)
		}
	}
	srv := NewServer(fuzzWait, 100*time.Millisecond, slog.New(slog.DiscardHandler))
	stream := newFakeStream(frames, mode.end())

	// The session's context: endSessionEnds ends it once the flow is
	// under way, endHold lets it time out.
	timeout := fuzzWait
	if mode.end() == endHold {
		timeout = 50 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if mode.end() == endSessionEnds {
		go func() {
			select {
			case <-stream.drained:
			case <-ctx.Done():
			}
			cancel()
		}()
	}
	allowed := func(a netip.Addr) bool { return loopback.Contains(a) }

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, stream, allowed, Unlimited{}) }()
	var err error
	select {
	case err = <-served:
	case <-time.After(timeout + fuzzWait):
		t.Fatalf("Serve did not return %v after its context ended\n%s", fuzzWait, goroutineDump())
	}
	cancel()        // the session's context, and with it the goroutine above
	stream.finish() // gRPC ends the stream when the handler returns
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(fuzzWait):
		t.Fatalf("Server.Close did not return within %v\n%s", fuzzWait, goroutineDump())
	}

	if e := stream.misuse.Load(); e != nil {
		t.Fatal(*e)
	}
	// Each flow of the stream starts with only an Opened frame; a refusal
	// or DONE ends it.
	sent := stream.sentFrames()
	startOfFlow := true
	for _, fr := range sent {
		if startOfFlow {
			if fr.Opened == nil || fr.Opened.Status == pb.OpenStatus_OPEN_STATUS_UNSPECIFIED || len(fr.Data) > 0 || fr.Control != pb.Control_CONTROL_NONE {
				t.Fatalf("first frame of a flow the server sent is %v, want only Opened", fr)
			}
			startOfFlow = fr.Opened.Status != pb.OpenStatus_OPEN_OK
			continue
		}
		if fr.Opened != nil || fr.Open != nil {
			t.Fatalf("server sent %v inside a flow", fr)
		}
		startOfFlow = fr.Control == pb.Control_DONE
	}
	checkEcho(t, echo, mode, frames, sent, err)
	waitGoroutines(t, baseline)
}

// checkEcho checks a TCP flow to the echo server that ended cleanly: what
// came back is what was sent, then an EOF frame.
func checkEcho(t *testing.T, echo echoServers, mode frameMode, frames []fuzzFrame, sent []*pb.Frame, serveErr error) {
	if mode.end() != endHalfClose || len(frames) == 0 || frames[0].msg == nil || frames[0].msg.Open == nil {
		return
	}
	open := frames[0].msg.Open
	dst, perr := netip.ParseAddrPort(open.Destination)
	if perr != nil || open.Protocol != pb.Protocol_TCP || dst.Addr().Unmap() != netip.AddrFrom4([4]byte{127, 0, 0, 1}) || dst.Port() != echo.tcp {
		return
	}
	var want bytes.Buffer
	for _, fr := range frames[1:] {
		if fr.msg == nil || fr.msg.Open != nil || fr.msg.Opened != nil || fr.msg.Control != pb.Control_CONTROL_NONE {
			return // the stream failed or carries more than one flow: checked by TestStreamReuse
		}
		want.Write(fr.msg.Data)
	}
	if serveErr != nil {
		t.Fatalf("echo flow with half-close: Serve = %v, want nil", serveErr)
	}
	var got bytes.Buffer
	for i, fr := range sent[1:] {
		got.Write(fr.Data)
		if fr.Control == pb.Control_EOF && i != len(sent)-2 {
			t.Fatalf("EOF frame %d of %d", i+1, len(sent)-1)
		}
	}
	if len(sent) < 2 || sent[len(sent)-1].Control != pb.Control_EOF {
		t.Fatalf("echo flow did not end with an EOF frame")
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("echo returned %d bytes, want %d", got.Len(), want.Len())
	}
}

// fuzzFrame is one frame of the input: msg nil means bytes that do not
// unmarshal.
type fuzzFrame struct {
	msg *pb.Frame
	raw []byte
}

func splitFrames(data []byte) []fuzzFrame {
	var frames []fuzzFrame
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		if k <= 0 {
			n, k = uint64(len(data)), 0
		}
		data = data[k:]
		n = min(n, uint64(len(data)))
		raw := data[:n]
		data = data[n:]
		msg := new(pb.Frame)
		if proto.Unmarshal(raw, msg) != nil {
			msg = nil
		}
		frames = append(frames, fuzzFrame{msg: msg, raw: raw})
	}
	return frames
}

func joinFrames(frames ...[]byte) []byte {
	var b []byte
	for _, fr := range frames {
		b = binary.AppendUvarint(b, uint64(len(fr)))
		b = append(b, fr...)
	}
	return b
}

func marshal(fr *pb.Frame) []byte {
	b, err := proto.Marshal(fr)
	if err != nil {
		panic(err)
	}
	return b
}

type frameSeed struct {
	mode   frameMode
	frames [][]byte
}

func serverSeeds() []frameSeed {
	open := func(p pb.Protocol, dst string) []byte {
		return marshal(&pb.Frame{Open: &pb.OpenFlow{Protocol: p, Source: "127.0.0.1:40000", Destination: dst}})
	}
	data := func(s string) []byte { return marshal(&pb.Frame{Data: []byte(s)}) }
	eof := marshal(&pb.Frame{Control: pb.Control_EOF})
	// Ports modulo 3: 0 is the TCP echo server, 1 the UDP one, 2 closed.
	const tcpEcho, udpEcho, closed = "127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5"
	return []frameSeed{
		{endHalfClose, [][]byte{open(pb.Protocol_TCP, tcpEcho), data("hello "), data("world")}},
		{endHalfClose, [][]byte{open(pb.Protocol_TCP, "[::ffff:127.0.0.1]:3"), data(string(make([]byte, 200<<10)))}},
		{endReset, [][]byte{open(pb.Protocol_TCP, tcpEcho), data("reset after this")}},
		{endSessionEnds, [][]byte{open(pb.Protocol_TCP, tcpEcho), data("session ends")}},
		{endHold, [][]byte{open(pb.Protocol_TCP, tcpEcho)}},
		{endHalfClose, [][]byte{open(pb.Protocol_UDP, udpEcho), data("one"), data(""), data("two")}},
		{endHold, [][]byte{open(pb.Protocol_UDP, udpEcho), data("idle ends it")}},
		{endHalfClose, [][]byte{open(pb.Protocol_UDP, tcpEcho), data("port unreachable")}},
		{endHalfClose, [][]byte{open(pb.Protocol_TCP, closed)}},
		{endHalfClose, [][]byte{open(pb.Protocol_TCP, "10.1.2.3:80")}},
		{endHalfClose, [][]byte{open(pb.Protocol_TCP, "[::1]:80")}},
		{endHalfClose, [][]byte{open(pb.Protocol_TCP, "not an address")}},
		{endHalfClose, [][]byte{open(pb.Protocol_PROTOCOL_UNSPECIFIED, tcpEcho)}},
		{endHalfClose, [][]byte{open(pb.Protocol(7), tcpEcho)}},
		{endHalfClose, [][]byte{data("no open")}},
		{endHalfClose, [][]byte{marshal(&pb.Frame{Open: &pb.OpenFlow{Protocol: pb.Protocol_TCP, Destination: tcpEcho}, Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_OK}, Data: []byte("x"), Control: pb.Control_EOF}), marshal(&pb.Frame{Open: &pb.OpenFlow{}, Control: pb.Control_EOF})}},
		{endHalfClose, [][]byte{open(pb.Protocol_TCP, tcpEcho), {0xff, 0xff, 0xff}}},
		// Flows one after another on one stream, as the daemon's pool does.
		{endHalfClose, [][]byte{open(pb.Protocol_TCP, tcpEcho), data("first"), eof, open(pb.Protocol_TCP, closed), open(pb.Protocol_TCP, tcpEcho), data("third"), eof}},
		{endReset, [][]byte{open(pb.Protocol_TCP, tcpEcho), eof, open(pb.Protocol_TCP, tcpEcho), data("reset in the second flow")}},
		{endHalfClose, [][]byte{open(pb.Protocol_TCP, tcpEcho), data("data and EOF, then data"), eof, data("stray")}},
		{endHalfClose, [][]byte{open(pb.Protocol_TCP, tcpEcho), marshal(&pb.Frame{Control: pb.Control_DONE})}},
		{endHalfClose, [][]byte{{0x0a, 0x80}}},
		{endHalfClose, nil},
		// A daemon that opens the stream and sends nothing: Serve used to
		// wait for its first frame past its context, and Close with it.
		{endHold, nil},
	}
}

// fakeStream is the server's end of a Tunnel stream in memory. Recv
// returns the input's frames, then ends as the mode says. It records what
// the server sends and reports concurrent use, which gRPC forbids.
type fakeStream struct {
	ctx    context.Context
	cancel context.CancelFunc
	frames []fuzzFrame
	end    frameMode

	drained chan struct{} // closed once Recv returned every frame

	recvBusy, sendBusy atomic.Bool
	misuse             atomic.Pointer[string]

	mu   sync.Mutex // guards sent and next
	sent []*pb.Frame
	next int
}

var _ Stream = (*fakeStream)(nil)

func newFakeStream(frames []fuzzFrame, end frameMode) *fakeStream {
	s := &fakeStream{frames: frames, end: end, drained: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if len(frames) == 0 {
		close(s.drained)
	}
	return s
}

// finish ends the stream as gRPC does once the handler returned.
func (s *fakeStream) finish() { s.cancel() }

func (s *fakeStream) report(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.misuse.CompareAndSwap(nil, &msg)
}

func (s *fakeStream) sentFrames() []*pb.Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

func (s *fakeStream) Context() context.Context { return s.ctx }

func (s *fakeStream) Recv() (*pb.Frame, error) {
	m := new(pb.Frame)
	if err := s.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (s *fakeStream) RecvMsg(m any) error {
	if !s.recvBusy.CompareAndSwap(false, true) {
		s.report("concurrent RecvMsg")
	}
	defer s.recvBusy.Store(false)
	if s.ctx.Err() != nil {
		return status.Error(codes.Canceled, "stream ended")
	}
	s.mu.Lock()
	if s.next < len(s.frames) {
		fr := s.frames[s.next]
		s.next++
		if s.next == len(s.frames) {
			close(s.drained)
		}
		s.mu.Unlock()
		if fr.msg == nil {
			return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %d bytes", len(fr.raw))
		}
		dst := m.(*pb.Frame)
		proto.Reset(dst)
		proto.Merge(dst, fr.msg)
		return nil
	}
	s.mu.Unlock()
	switch s.end {
	case endHalfClose:
		return io.EOF
	case endReset:
		return status.Error(codes.Canceled, "context canceled")
	}
	<-s.ctx.Done()
	return status.Error(codes.Canceled, "context canceled")
}

func (s *fakeStream) Send(m *pb.Frame) error { return s.SendMsg(m) }

func (s *fakeStream) SendMsg(m any) error {
	if !s.sendBusy.CompareAndSwap(false, true) {
		s.report("concurrent SendMsg")
	}
	defer s.sendBusy.Store(false)
	if s.ctx.Err() != nil {
		return status.Error(codes.Canceled, "stream ended")
	}
	// gRPC has marshalled m once SendMsg returns: the caller may reuse it.
	c := proto.Clone(m.(*pb.Frame)).(*pb.Frame)
	s.mu.Lock()
	s.sent = append(s.sent, c)
	s.mu.Unlock()
	return nil
}

func (s *fakeStream) SetHeader(metadata.MD) error  { return nil }
func (s *fakeStream) SendHeader(metadata.MD) error { return nil }
func (s *fakeStream) SetTrailer(metadata.MD)       {}

// FuzzFlowRecv is the client's side: a real gRPC server on loopback answers
// Client.Open with arbitrary frames, then ends the stream as the mode says.
// Open and Recv must not panic or hang; Recv must never return empty data
// without an error, and must return the data frames' bytes in order.
func FuzzFlowRecv(f *testing.F) {
	mgr := startScriptedManager(f)
	ok := marshal(&pb.Frame{Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_OK}})
	data := func(s string) []byte { return marshal(&pb.Frame{Data: []byte(s)}) }
	eof := marshal(&pb.Frame{Control: pb.Control_EOF})
	for _, s := range []frameSeed{
		{0, [][]byte{ok, data("hello"), data("world"), eof}},
		{1, [][]byte{ok, data("then an error")}},
		{2, [][]byte{ok, data("then the client resets")}},
		{0, [][]byte{ok, {}, marshal(&pb.Frame{Opened: &pb.Opened{}}), data("x"), marshal(&pb.Frame{Data: []byte("data and EOF"), Control: pb.Control_EOF})}},
		{0, [][]byte{marshal(&pb.Frame{Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_REFUSED, Error: "refused"}})}},
		{0, [][]byte{data("no Opened")}},
		{1, nil},
		{0, [][]byte{ok, {0xff, 0xff}}},
	} {
		f.Add(byte(s.mode), joinFrames(s.frames...))
	}
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		runClientInput(t, mgr, mode, splitFrames(data))
	})
}

// scriptedManager is a gRPC server whose Tunnel sends the frames of the
// current fuzz input. Inputs run one at a time per process.
type scriptedManager struct {
	pb.UnimplementedManagerServer
	client *Client
	script chan clientScript
}

type clientScript struct {
	frames []fuzzFrame
	end    byte // 0: return OK, 1: return an error, 2: wait for the client
	done   chan struct{}
}

func startScriptedManager(tb testing.TB) *scriptedManager {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	m := &scriptedManager{script: make(chan clientScript, 1)}
	srv := grpc.NewServer(ServerOptions(Keepalive{})...)
	pb.RegisterManagerServer(srv, m)
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	cc, err := grpc.NewClient(ln.Addr().String(), DialOptions(nil)...)
	if err != nil {
		srv.Stop()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cc.Close()
		srv.Stop()
		<-served
	})
	m.client = NewClient(cc, fuzzWait)
	return m
}

func (m *scriptedManager) Tunnel(stream grpc.BidiStreamingServer[pb.Frame, pb.Frame]) error {
	var sc clientScript
	select {
	case sc = <-m.script:
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
	defer close(sc.done)
	if _, err := stream.Recv(); err != nil {
		return err
	}
	for _, fr := range sc.frames {
		msg := fr.msg
		if msg == nil {
			// Bytes that do not unmarshal cannot be sent through gRPC's
			// codec; the closest is a stream error.
			return status.Error(codes.Internal, "scripted: unmarshalable frame")
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	switch sc.end {
	case 0:
		return nil
	case 1:
		return status.Error(codes.Aborted, "scripted reset")
	}
	<-stream.Context().Done()
	return nil
}

func runClientInput(t *testing.T, m *scriptedManager, mode byte, frames []fuzzFrame) {
	sc := clientScript{frames: frames, end: mode % 3, done: make(chan struct{})}
	m.script <- sc
	ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
	defer cancel()

	// What Recv must return: the data of the frames after the first, up
	// to and with a frame with control EOF or DONE, or up to a frame that
	// cannot be sent.
	var want bytes.Buffer
	wantEOF := false
	allSent := true
	for i, fr := range frames {
		if fr.msg == nil {
			allSent = false
			break
		}
		if i == 0 {
			continue
		}
		want.Write(fr.msg.Data)
		if c := fr.msg.Control; c == pb.Control_EOF || c == pb.Control_DONE {
			wantEOF = true
			break
		}
	}
	if sc.end == 0 && allSent {
		wantEOF = true // the handler returned OK
	}
	// Without an end in sight, the client reads what was sent and resets.
	waitsForClient := sc.end == 2 && !wantEOF && allSent

	flow, err := m.client.Open(ctx, pb.Protocol_TCP, netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:80"))
	openOK := len(frames) > 0 && frames[0].msg != nil && frames[0].msg.Opened.GetStatus() == pb.OpenStatus_OPEN_OK
	if (err == nil) != openOK {
		t.Fatalf("Open = %v, want success %v", err, openOK)
	}
	if err == nil {
		var got bytes.Buffer
		var rerr error
		for !waitsForClient || got.Len() < want.Len() {
			var b []byte
			b, rerr = flow.Recv()
			if rerr != nil {
				break
			}
			if len(b) == 0 {
				t.Fatal("Recv returned no data and no error")
			}
			got.Write(b)
		}
		if ctx.Err() != nil {
			t.Fatalf("Recv did not end within %v", fuzzWait)
		}
		if !bytes.HasPrefix(want.Bytes(), got.Bytes()) {
			t.Fatalf("Recv returned %q, want a prefix of %q", got.Bytes(), want.Bytes())
		}
		if wantEOF {
			if rerr != io.EOF {
				t.Fatalf("Recv ended with %v, want io.EOF", rerr)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("Recv returned %q before EOF, want %q", got.Bytes(), want.Bytes())
			}
		} else if rerr == io.EOF {
			t.Fatalf("Recv ended with io.EOF though the manager neither sent EOF nor returned OK")
		}
		flow.Close(rerr != io.EOF || sc.end == 2)
	}
	// A stream that DONE or a refusal freed waits in the pool for the next
	// flow, and keeps the scripted handler with it.
	m.client.flush()
	cancel()
	select {
	case <-sc.done:
	case <-m.script: // the handler never ran: Open failed before it
	case <-time.After(fuzzWait):
		t.Fatalf("the manager's handler did not end\n%s", goroutineDump())
	}
}

// waitGoroutines fails t unless the number of goroutines is back to
// baseline within a bounded wait.
func waitGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(fuzzWait)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), baseline, goroutineDump())
		}
		time.Sleep(time.Millisecond)
	}
}

func goroutineDump() []byte {
	buf := make([]byte, 1<<20)
	return buf[:runtime.Stack(buf, true)]
}

// silentManager serves Tunnel with Server.Serve under a session context
// that ends after 50 ms.
type silentManager struct {
	pb.UnimplementedManagerServer
	srv    *Server
	served chan error
}

func (m *silentManager) Tunnel(stream grpc.BidiStreamingServer[pb.Frame, pb.Frame]) error {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := m.srv.Serve(ctx, stream, func(netip.Addr) bool { return true }, Unlimited{})
	m.served <- err
	return err
}

// TestServeEndsSilentStream is the real-gRPC form of the fuzzer's finding:
// a daemon that opens a Tunnel stream and sends nothing is reset when the
// session ends, and Close does not wait for it.
func TestServeEndsSilentStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &silentManager{srv: NewServer(0, 0, slog.New(slog.DiscardHandler)), served: make(chan error, 1)}
	gs := grpc.NewServer(ServerOptions(Keepalive{})...)
	pb.RegisterManagerServer(gs, m)
	go gs.Serve(ln)
	defer gs.Stop()
	cc, err := grpc.NewClient(ln.Addr().String(), DialOptions(nil)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
	defer cancel()
	stream, err := pb.NewManagerClient(cc).Tunnel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-m.served:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Serve = %v, want Unavailable", err)
		}
	case <-ctx.Done():
		t.Fatal("Serve still waits for the first frame after the session ended")
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("daemon's Recv = %v, want Unavailable", err)
	}
	closed := make(chan struct{})
	go func() { m.srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close waits for a stream that sent nothing")
	}
}

package tunnel_test

import (
	"io"
	"net"
	"testing"

	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
)

// These benchmarks decide how flows share streams (docs/architecture.md, "Multiplexing").
// Any design pays the manager's dial and one message round trip per new
// flow; a new stream per flow adds the cost of opening and ending an
// HTTP/2 stream and the manager's handler, which reusing the stream of an
// ended flow saves. Compare:
//
//	BenchmarkOpenFlow/pooled      dial + 1-byte echo + clean close, on a reused stream
//	BenchmarkOpenFlow/new-stream  the same on a new stream per flow
//	BenchmarkDialOnly             the dial + 1-byte echo alone
//	BenchmarkEchoOnOpenFlow       one message round trip on an open flow

func BenchmarkOpenFlow(b *testing.B) {
	for _, bc := range []struct {
		name    string
		maxIdle int
	}{{"pooled", tunnel.MaxIdleStreams()}, {"new-stream", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			defer tunnel.SetMaxIdleStreams(bc.maxIdle)()
			benchmarkOpenFlow(b)
		})
	}
}

func benchmarkOpenFlow(b *testing.B) {
	h := newHarness(b)
	dst := echoServer(b)
	b.ReportAllocs()
	for b.Loop() {
		f, err := h.open(b, pb.Protocol_TCP, dst)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Send([]byte{1}); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Recv(); err != nil {
			b.Fatal(err)
		}
		f.CloseWrite()
		if _, err := f.Recv(); err != io.EOF {
			b.Fatal(err)
		}
		f.Close(false)
	}
}

func BenchmarkDialOnly(b *testing.B) {
	dst := echoServer(b)
	buf := make([]byte, 1)
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", dst)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(buf)
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
		c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT pile-up across b.N
		c.Close()
	}
}

func BenchmarkEchoOnOpenFlow(b *testing.B) {
	h := newHarness(b)
	f, err := h.open(b, pb.Protocol_TCP, echoServer(b))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close(true)
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Send([]byte{1}); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Recv(); err != nil {
			b.Fatal(err)
		}
	}
}

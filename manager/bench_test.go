package manager

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"testing"

	pb "github.com/tether-dev/tether/rpc/manager"
)

// BenchmarkReport10kSessions measures the manager's cost of one report
// while it holds 10,000 sessions, and its memory per session. At one report
// per session per second, 10,000 × ns/op is the CPU share of one core the
// rule costs (gRPC transport excluded).
func BenchmarkReport10kSessions(b *testing.B) {
	const n = 10_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := New(Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown()
	ctxs := make([]context.Context, n)
	for i := range ctxs {
		resp, err := s.Arrive(context.Background(), &pb.ArriveRequest{User: fmt.Sprintf("user%d", i), Host: "laptop", DaemonInstance: "d"})
		if err != nil {
			b.Fatal(err)
		}
		ctxs[i] = withCreds(resp.SessionId, resp.SessionSecret)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heapPerSession := float64(after.HeapAlloc-before.HeapAlloc) / n
	req := &pb.ReportRequest{DaemonInstance: "d", Activity: &pb.Activity{}}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		req.Activity.Events = uint64(i / n)
		if _, err := s.Report(ctxs[i%n], req); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perOp*n/1e9*100, "%core-at-10k/s")
	b.ReportMetric(heapPerSession, "heap-B/session")
}

package procs

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"testing"
	"time"
)

func TestRule(t *testing.T) {
	rep := func(u float64, n int) []float64 { return slices.Repeat([]float64{u}, n) }
	cat := slices.Concat[[]float64]
	for _, tc := range []struct {
		name string
		max  int
		u    []float64
		want []int // Ps after each period
	}{
		{"light load keeps one P", 4, []float64{0.1, 0.45, 0.75, 0.84}, []int{1, 1, 1, 1}},
		{"a saturated P adds one per period", 4, rep(10, 4), []int{2, 3, 4, 4}},
		{"never beyond max", 2, rep(3, 3), []int{2, 2, 2}},
		{"max below one means one", 0, rep(3, 2), []int{1, 1}},
		{"raise only when all Ps are busy", 4, []float64{0.9, 1.6, 1.7}, []int{2, 2, 3}},
		{"gives a P back after ten calm periods", 4, cat([]float64{0.9}, rep(0.4, 10)), []int{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1}},
		{"a busy period restarts the count", 4, cat([]float64{0.9}, rep(0.4, 9), []float64{0.6}, rep(0.4, 9)),
			[]int{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}},
		{"never below one", 4, rep(0, 12), slices.Repeat([]int{1}, 12)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRule(tc.max)
			for i, u := range tc.u {
				if got := r.Next(u); got != tc.want[i] {
					t.Fatalf("period %d (u=%.2f): %d Ps, want %d", i, u, got, tc.want[i])
				}
			}
		})
	}
}

// Adapt starts at one P and restores nothing itself: the caller owns the
// process. The test puts GOMAXPROCS back.
func TestAdaptStartsAtOneP(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	if _, ok := cpuTime(); !ok {
		t.Skip("no CPU time on this OS")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Adapt(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.GOMAXPROCS(0) != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS %d, want 1", got)
	}
	cancel()
	<-done
}

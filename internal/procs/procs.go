// Package procs sizes GOMAXPROCS to the load of a process whose work comes
// in short bursts between network waits, such as the traffic manager.
//
// With more than one P, the Go scheduler wakes another thread whenever a
// goroutine becomes ready while a P is idle; when the bursts are short,
// that thread mostly finds nothing to do and sleeps again. In the manager
// those wake-ups cost a quarter of its CPU per new connection, and one P
// was faster in every lab measurement, bulk transfers included
// (docs/performance.md). One P also caps a busy process at one core, so Adapt
// starts at one P and adds one whenever the process keeps all of them
// busy, and gives it back once the load has been well below it for a
// while.
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"time"
)

// The rule, applied once per Period to the CPU time the process used, u
// cores on average over the period:
//   - with P Ps, u ≥ raiseAt×P adds a P, up to the maximum: the Ps are
//     (nearly) saturated;
//   - u < lowerAt×(P−1) for lowerAfter periods in a row removes one: the
//     load would leave P−1 Ps half idle.
//
// u counts syscall time too, and a thread blocked in a syscall gives its P
// to another, so u can exceed P.
const (
	Period     = time.Second
	raiseAt    = 0.85
	lowerAt    = 0.5
	lowerAfter = 10
)

// Rule holds the state of the rule between periods.
type Rule struct {
	max, procs int
	calm       int // periods in a row below the lowering threshold
}

// NewRule starts at one P and never goes beyond most.
func NewRule(most int) *Rule { return &Rule{max: max(most, 1), procs: 1} }

// Next returns the Ps for the next period, after one in which the process
// used u cores.
func (r *Rule) Next(u float64) int {
	switch {
	case u >= raiseAt*float64(r.procs) && r.procs < r.max:
		r.procs++
		r.calm = 0
	case r.procs > 1 && u < lowerAt*float64(r.procs-1):
		r.calm++
		if r.calm >= lowerAfter {
			r.procs--
			r.calm = 0
		}
	default:
		r.calm = 0
	}
	return r.procs
}

// Adapt sets GOMAXPROCS to one and then, once per Period, to what the rule
// says, until ctx ends. Its maximum is the runtime's default when Adapt
// starts: one per CPU, or the container's CPU limit. It does nothing where
// the process's CPU time cannot be read.
func Adapt(ctx context.Context, log *slog.Logger) {
	last, ok := cpuTime()
	if !ok {
		return
	}
	r := NewRule(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(1)
	log.Debug("GOMAXPROCS adapts to the load", "procs", 1, "max", r.max)
	t := time.NewTicker(Period)
	defer t.Stop()
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c, _ := cpuTime()
			u := (c - last).Seconds() / now.Sub(lastAt).Seconds()
			last, lastAt = c, now
			if p, old := r.Next(u), runtime.GOMAXPROCS(0); p != old {
				runtime.GOMAXPROCS(p)
				log.Info("GOMAXPROCS changed with the load", "procs", p, "was", old, "cores_used", u)
			}
		}
	}
}

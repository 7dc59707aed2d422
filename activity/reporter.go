package activity

import (
	"context"
	"sync"
	"time"
)

// Reporter keeps the manager informed. It sends a report at once on the
// first activity after a quiet interval (the manager learns within a round
// trip that an idle user is back), then at most one report per interval
// while activity continues, and a heartbeat once per interval otherwise.
// Heartbeats are liveness only: they carry the same counter, which the
// manager does not take as activity.
//
// An idle reporter wakes once per interval, never more often.
type Reporter struct {
	tracker  *Tracker
	interval time.Duration // Run's goroutine only
	send     func(context.Context, Snapshot)

	// next is a new interval for Run to take (SetInterval); mu guards it.
	mu      sync.Mutex
	next    time.Duration
	changed chan struct{}
}

// NewReporter returns a Reporter that calls send with each report. send
// owns error handling: the reporter keeps its rhythm whatever happens.
func NewReporter(t *Tracker, interval time.Duration, send func(context.Context, Snapshot)) *Reporter {
	return &Reporter{tracker: t, interval: interval, send: send, changed: make(chan struct{}, 1)}
}

// SetInterval changes the interval (the manager's activity.reportInterval
// changed): the next report goes out within the new interval. Safe to call
// from send and from any goroutine; the latest call wins.
func (r *Reporter) SetInterval(d time.Duration) {
	if d <= 0 {
		return
	}
	r.mu.Lock()
	r.next = d
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Run reports until ctx ends. The first report goes out at once.
func (r *Reporter) Run(ctx context.Context) {
	var (
		lastActivity time.Time // when a report last carried new events
		sentEvents   uint64
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	report := func() {
		// Armed before the snapshot: an event after it signals again.
		r.tracker.Arm()
		snap := r.tracker.Snapshot()
		r.send(ctx, snap)
		if snap.Events > sentEvents {
			sentEvents, lastActivity = snap.Events, time.Now()
		}
		timer.Reset(r.interval)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.changed:
			r.mu.Lock()
			d := r.next
			r.mu.Unlock()
			if d != r.interval {
				r.interval = d
				timer.Reset(d)
			}
		case <-timer.C:
			report()
		case <-r.tracker.Changed():
			if wait := r.interval - time.Since(lastActivity); wait > 0 {
				// Rate-limited: the pending events go out when the
				// interval since the last activity report is over, and
				// until then more events need not wake us (unarmed).
				timer.Reset(wait)
				continue
			}
			report()
		}
	}
}

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
// The rate-limit window is measured on the tracker's clock, which counts
// suspend: the first activity after a night asleep goes out at once, not
// after what is left of a window that began before the night. The manager
// dates activity no later than one interval after the previous report when
// reports were further apart (Ledger), so that fresh activity after such a
// gap is not dated before it, the reporter first repeats its previous
// report (the counter as it was: liveness only) and then reports the new
// events. Only new activity that signalled at once does this: events that
// waited in the window may be from before the gap.
//
// An idle reporter wakes once per interval, never more often.
type Reporter struct {
	tracker  *Tracker
	interval time.Duration // Run's goroutine only
	send     func(context.Context, Snapshot)

	// Run's goroutine only: what the last report with new events carried
	// and when, and the last report and when (readings of the tracker's
	// clock).
	sentEvents   uint64
	sentActivity bool
	lastActivity time.Duration
	sent         bool
	last         Snapshot
	lastSent     time.Duration

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
	timer := time.NewTimer(0)
	defer timer.Stop()
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
			r.report(ctx)
			timer.Reset(r.interval)
		case <-r.tracker.Changed():
			if wait := r.wait(); wait > 0 {
				// Rate-limited: the pending events go out when the
				// interval since the last activity report is over, and
				// until then more events need not wake us (unarmed).
				timer.Reset(wait)
				continue
			}
			r.reportFresh(ctx)
			timer.Reset(r.interval)
		}
	}
}

// wait is how long activity signalled now waits for its report; zero or
// less means at once.
func (r *Reporter) wait() time.Duration {
	if !r.sentActivity {
		return 0
	}
	return r.interval - (r.tracker.clock() - r.lastActivity)
}

// reportFresh reports activity that signalled at once (it happened just
// now), first repeating the previous report when it is more than an
// interval old, so the manager does not date the new events before the gap.
func (r *Reporter) reportFresh(ctx context.Context) {
	if now := r.tracker.clock(); r.sent && now-r.lastSent > r.interval {
		again := r.last
		if again.Known {
			again.IdleFor = max(now-again.At, 0)
		}
		r.send(ctx, again)
		r.lastSent = now
	}
	r.report(ctx)
}

// report sends one report.
func (r *Reporter) report(ctx context.Context) {
	// Armed before the snapshot: an event after it signals again.
	r.tracker.Arm()
	snap := r.tracker.Snapshot()
	r.send(ctx, snap)
	now := r.tracker.clock()
	r.sent, r.last, r.lastSent = true, snap, now
	if snap.Events > r.sentEvents {
		r.sentEvents, r.sentActivity, r.lastActivity = snap.Events, true, now
	}
}

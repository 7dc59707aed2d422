package activity

import (
	"context"
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
// after what is left of a window that began before the night.
//
// An idle reporter wakes once per interval, never more often.
type Reporter struct {
	tracker  *Tracker
	interval time.Duration
	send     func(context.Context, Snapshot)

	// Run's goroutine only: what the last report with new events carried
	// and when (a reading of the tracker's clock).
	sentEvents   uint64
	sentActivity bool
	lastActivity time.Duration
}

// NewReporter returns a Reporter that calls send with each report. send
// owns error handling: the reporter keeps its rhythm whatever happens.
func NewReporter(t *Tracker, interval time.Duration, send func(context.Context, Snapshot)) *Reporter {
	return &Reporter{tracker: t, interval: interval, send: send}
}

// Run reports until ctx ends. The first report goes out at once.
func (r *Reporter) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
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
			r.report(ctx)
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

// report sends one report.
func (r *Reporter) report(ctx context.Context) {
	// Armed before the snapshot: an event after it signals again.
	r.tracker.Arm()
	snap := r.tracker.Snapshot()
	r.send(ctx, snap)
	if snap.Events > r.sentEvents {
		r.sentEvents, r.sentActivity, r.lastActivity = snap.Events, true, r.tracker.clock()
	}
}

package activity

import (
	"context"
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// step is one report received by the manager.
type step struct {
	recv time.Duration // receive time, since t0 on the manager's clock
	r    Report
}

func TestLedgerRule(t *testing.T) {
	const inst = "a"
	for _, tc := range []struct {
		name  string
		steps []step
		want  time.Duration // last activity, since t0
	}{
		{"arrival is activity", nil, 0},
		{"counter grew: receive time minus idle-for",
			[]step{{10 * time.Second, counter(inst, 1, 2*time.Second)}}, 8 * time.Second},
		{"liveness only: no activity data",
			[]step{{10 * time.Second, Report{Instance: inst}}}, 0},
		{"counter did not grow: not activity, whatever idle-for says",
			[]step{{10 * time.Second, counter(inst, 1, 0)}, {20 * time.Second, counter(inst, 1, 0)}}, 10 * time.Second},
		{"laptop slept 12h and woke without traffic",
			[]step{{time.Minute, counter(inst, 5, 0)}, {12*time.Hour + time.Minute, counter(inst, 5, time.Second)}}, time.Minute},
		{"negative idle-for (broken client) is clamped to now",
			[]step{{10 * time.Second, counter(inst, 1, -time.Hour)}}, 10 * time.Second},
		{"huge idle-for cannot go before the previous report",
			[]step{{10 * time.Second, counter(inst, 1, 0)}, {40 * time.Second, counter(inst, 2, 100*time.Hour)}}, 10 * time.Second},
		{"huge idle-for cannot go back before what we knew",
			[]step{{10 * time.Second, Report{Instance: inst}}, {40 * time.Second, counter(inst, 2, 35*time.Second)}}, 10 * time.Second},
		{"a late, older report changes nothing",
			[]step{{10 * time.Second, counter(inst, 3, 0)}, {11 * time.Second, counter(inst, 2, 0)}}, 10 * time.Second},
		{"lost reports: the next one counts, no later than one interval after the last",
			[]step{{10 * time.Second, counter(inst, 1, 0)}, {100 * time.Second, counter(inst, 9, 5*time.Second)}}, 40 * time.Second},
		{"daemon restarted: first report of a new instance is liveness only",
			[]step{{10 * time.Second, counter(inst, 4, 0)}, {20 * time.Second, counter("b", 1, 0)}}, 10 * time.Second},
		{"daemon restarted: its later events count",
			[]step{{10 * time.Second, counter(inst, 4, 0)}, {20 * time.Second, counter("b", 1, 0)}, {30 * time.Second, counter("b", 2, time.Second)}}, 29 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLedger(t0, inst)
			for _, s := range tc.steps {
				l.Apply(at(s.recv), s.r, 30*time.Second)
			}
			if last, _ := l.LastActivity(); last.Sub(t0) != tc.want {
				got := last.Sub(t0)
				t.Fatalf("last activity at %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLedgerStatesAndTTL(t *testing.T) {
	const block, interval, ttl = 10 * time.Minute, 30 * time.Second, 24 * time.Hour
	l := NewLedger(t0, "a")
	if s := l.State(at(time.Minute), block, interval); s != Active {
		t.Fatalf("just arrived: %v", s)
	}
	l.Apply(at(11*time.Minute), Report{Instance: "a"}, interval) // heartbeat
	if s := l.State(at(11*time.Minute), block, interval); s != Idle {
		t.Fatalf("heartbeats only, 11m after arrival: %v", s)
	}
	if s := l.State(at(11*time.Minute+91*time.Second), block, interval); s != Unreachable {
		t.Fatalf("no report for 3 intervals: %v", s)
	}
	if l.Expired(at(ttl), ttl) {
		t.Fatal("expired exactly at the TTL")
	}
	if !l.Expired(at(ttl+time.Second), ttl) {
		t.Fatal("not expired after the TTL")
	}
	l.Arrived(at(ttl/2), "b", false)
	if last, _ := l.LastActivity(); !last.Equal(t0) {
		t.Fatal("a silent reconnect counted as activity")
	}
	l.Arrived(at(ttl/2), "b", true)
	if last, _ := l.LastActivity(); !last.Equal(at(ttl / 2)) {
		t.Fatal("a connect by the CLI did not count")
	}
}

// counter is a report with activity data.
func counter(inst string, events uint64, idleFor time.Duration) Report {
	return Report{Instance: inst, HasActivity: true, Events: events, IdleFor: idleFor}
}

// laptop is a daemon (tracker and reporter) and the manager's ledger of its
// session, with clocks the test moves: boot counts suspend, mono (what Go's
// runtime timers follow) stops in it, and the manager's clock. Its methods
// do what Reporter.Run does on a signal and on its timer.
type laptop struct {
	t          *testing.T
	boot, mono time.Duration
	mgr        time.Time
	clock      Clock // what the tracker reads: boot, or mono on a platform without a boot clock
	tracker    *Tracker
	rep        *Reporter
	instance   string
	instances  int
	ledger     *Ledger
	timerAt    time.Duration // mono reading when Run's timer fires
	linkDown   bool
}

const (
	simInterval = 30 * time.Second
	simBlock    = 10 * time.Minute
	simTTL      = 24 * time.Hour
)

// newLaptop connects: a CLI command, then the arrival.
func newLaptop(t *testing.T, stopsInSuspend bool) *laptop {
	l := &laptop{t: t, boot: time.Hour, mono: time.Hour, mgr: t0}
	l.clock = func() time.Duration { return l.boot }
	if stopsInSuspend {
		l.clock = func() time.Duration { return l.mono }
	}
	l.startDaemon(nil)
	l.tracker.NoteCLI("connect")
	<-l.tracker.Changed() // Run's first report goes out at once anyway
	l.ledger = NewLedger(l.mgr, l.instance)
	l.fire()
	return l
}

func (l *laptop) startDaemon(restore *Snapshot) {
	l.instances++
	l.instance = fmt.Sprintf("d%d", l.instances)
	l.tracker = NewTracker(l.clock, nil)
	if restore != nil {
		l.tracker.Restore(restore.At, restore.Reason)
	}
	l.rep = NewReporter(l.tracker, simInterval, l.deliver)
}

func (l *laptop) deliver(_ context.Context, s Snapshot) {
	if l.linkDown {
		return
	}
	l.ledger.Apply(l.mgr, Report{Instance: l.instance, HasActivity: true, Events: s.Events, IdleFor: s.IdleFor, IdleKnown: s.Known}, simInterval)
}

// fire is Run's timer: a report, then the next in one interval.
func (l *laptop) fire() {
	l.rep.report(context.Background())
	l.timerAt = l.mono + simInterval
}

// use is a CLI command, and what Run does with its signal.
func (l *laptop) use() {
	l.tracker.NoteCLI("status")
	select {
	case <-l.tracker.Changed():
	default:
		return
	}
	if w := l.rep.wait(); w > 0 {
		l.timerAt = l.mono + w
		return
	}
	l.rep.reportFresh(context.Background())
	l.timerAt = l.mono + simInterval
}

// run lets d pass awake: every clock moves, the timer fires when due.
func (l *laptop) run(d time.Duration) {
	end := l.mono + d
	for l.timerAt <= end {
		step := l.timerAt - l.mono
		l.boot, l.mono, l.mgr = l.boot+step, l.mono+step, l.mgr.Add(step)
		l.fire()
	}
	step := end - l.mono
	l.boot, l.mono, l.mgr = l.boot+step, end, l.mgr.Add(step)
}

// sleep suspends the laptop for d: mono and the timers stand still.
func (l *laptop) sleep(d time.Duration) { l.boot, l.mgr = l.boot+d, l.mgr.Add(d) }

// reconnect is a silent re-arrival of the same daemon (link back).
func (l *laptop) reconnect() { l.ledger.Arrived(l.mgr, l.instance, false) }

// restartManager loses the ledger; the daemon re-arrives by itself.
func (l *laptop) restartManager() { l.ledger = NewUnknownLedger(l.mgr, l.instance) }

// restartDaemon starts a new daemon process on the same boot: it restores
// the last activity (the daemon's record), re-arrives and reports at once.
func (l *laptop) restartDaemon() {
	snap := l.tracker.Snapshot()
	l.startDaemon(&snap)
	l.ledger.Arrived(l.mgr, l.instance, false)
	l.fire()
}

func (l *laptop) state() State { return l.ledger.State(l.mgr, simBlock, simInterval) }

func expect(want State) func(*laptop) {
	return func(l *laptop) {
		l.t.Helper()
		if got := l.state(); got != want {
			l.t.Fatalf("state %v, want %v", got, want)
		}
	}
}

// TestActivityNeverWrong: sleep, TTL-final and restarts, through the
// reporter into the ledger.
func TestActivityNeverWrong(t *testing.T) {
	do := func(fs ...func(*laptop)) []func(*laptop) { return fs }
	use := func(l *laptop) { l.use() }
	run := func(d time.Duration) func(*laptop) { return func(l *laptop) { l.run(d) } }
	sleep := func(d time.Duration) func(*laptop) { return func(l *laptop) { l.sleep(d) } }
	reconnect := func(l *laptop) { l.reconnect() }
	restartManager := func(l *laptop) { l.restartManager() }
	restartDaemon := func(l *laptop) { l.restartDaemon() }
	linkDown := func(l *laptop) { l.linkDown = true }
	for _, tc := range []struct {
		name           string
		stopsInSuspend bool // the daemon's clock is Go's monotonic one
		steps          []func(*laptop)
		want           State
		expired        bool
		minIdle        time.Duration // the manager's idle time at least
	}{
		{"sleep: an event waiting in the rate-limit window is dated before the night", false,
			do(use, run(time.Second), use, sleep(12*time.Hour), run(simInterval)), Idle, false, 12 * time.Hour},
		{"sleep on a clock that stops in suspend: the gap rule dates it before the night", true,
			do(use, run(time.Second), use, sleep(12*time.Hour), run(simInterval)), Idle, false, 11 * time.Hour},
		{"sleep, link dropped: the reconnect at wake is no report to date after", false,
			do(use, run(time.Second), use, sleep(12*time.Hour), reconnect, run(simInterval)), Idle, false, 11 * time.Hour},
		{"back from the night: new activity is ACTIVE at once", false,
			do(run(40*time.Second), use, run(5*time.Second), sleep(12*time.Hour), use), Active, false, 0},
		{"TTL-final: asleep past the TTL, woken with an event pending, reconnected", false,
			do(use, run(time.Second), use, sleep(25*time.Hour), reconnect, run(simInterval), func(l *laptop) {
				if s := l.tracker.Snapshot(); s.IdleFor <= simTTL {
					t.Fatalf("the daemon's own idle time %v: it would resume silently", s.IdleFor)
				}
			}), Idle, true, simTTL},
		{"manager restart: UNKNOWN until the first report dates the last activity", false,
			do(use, run(15*time.Minute), restartManager, expect(Unknown), run(simInterval)), Idle, false, 15 * time.Minute},
		{"manager restart, no report yet: UNKNOWN, neither ACTIVE nor ended", false,
			do(use, run(time.Hour), linkDown, restartManager, run(time.Minute)), Unknown, false, time.Minute},
		{"daemon restart: it knows its true idle time, which is no new activity", false,
			do(use, run(15*time.Minute), restartDaemon, run(simInterval), func(l *laptop) {
				if s := l.tracker.Snapshot(); !s.Known || s.IdleFor < 15*time.Minute || s.Reason != "cli status" {
					t.Fatalf("restarted daemon's snapshot %+v: want its last activity 15m ago", s)
				}
			}), Idle, false, 15 * time.Minute},
		{"daemon and manager restart: the restored reading dates the session", false,
			do(use, run(15*time.Minute), restartManager, restartDaemon, run(simInterval)), Idle, false, 15 * time.Minute},
		{"daemon restart without a record, then a manager restart: UNKNOWN, ended a TTL later", false,
			do(use, run(time.Minute), func(l *laptop) { l.startDaemon(nil); l.ledger.Arrived(l.mgr, l.instance, false); l.fire() },
				restartManager, run(time.Hour), expect(Unknown), run(simTTL)), Unknown, true, simTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLaptop(t, tc.stopsInSuspend)
			l.t = t
			for _, step := range tc.steps {
				step(l)
			}
			if got := l.state(); got != tc.want {
				t.Fatalf("state %v, want %v", got, tc.want)
			}
			if got := l.ledger.Expired(l.mgr, simTTL); got != tc.expired {
				t.Fatalf("expired %v, want %v", got, tc.expired)
			}
			if idle, _ := l.ledger.Idle(l.mgr); idle < tc.minIdle {
				t.Fatalf("manager's idle %v, want at least %v", idle, tc.minIdle)
			}
		})
	}
}

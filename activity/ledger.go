package activity

import "time"

// State is how a session looks to the manager.
type State uint8

const (
	// Active: activity within the block timeout.
	Active State = iota + 1
	// Idle: reporting, but no activity within the block timeout.
	Idle
	// Unreachable: no report for UnreachableAfter report intervals.
	Unreachable
	// Unknown: the manager cannot date the last activity (it restarted
	// and the daemon's first dated report has not come). Not active, and
	// no reason to end the session either.
	Unknown
)

// UnreachableAfter is how many report intervals without a report make a
// session unreachable.
const UnreachableAfter = 3

func (s State) String() string {
	switch s {
	case Active:
		return "ACTIVE"
	case Idle:
		return "IDLE"
	case Unreachable:
		return "UNREACHABLE"
	}
	return "UNKNOWN"
}

// Report is what a daemon sends: its instance, and, when it has activity
// data, the event counter and the time since the last activity measured on
// its own clock, which counts suspend. IdleKnown says IdleFor dates a real
// activity: always when Events > 0; with Events 0, one an earlier daemon
// process on the same boot saw (restored from its cache).
type Report struct {
	Instance    string
	HasActivity bool
	Events      uint64
	IdleFor     time.Duration
	IdleKnown   bool
}

// Ledger is the manager's record of one session's activity, in the
// manager's clock only. It is not safe for concurrent use.
//
// The rule: when a report's counter has grown since the previous report of
// the same daemon instance, last activity becomes receive time − IdleFor,
// but never later than the receive time, never earlier than the receive
// time of the previous report (the new events happened after it), never
// later than that time plus one report interval when the gap between the
// two reports is longer than that (the events waited while the laptop
// slept or the link was down; a daemon whose clock stopped in suspend
// would date them at wake), and never earlier than it already was.
// Everything else is liveness only: a report without activity data, a
// counter that did not grow (a suspended laptop wakes with the same
// counter), and the first report of a new instance (a restarted daemon
// counts from zero again). An arrival is not a report: a laptop that wakes
// and reconnects before reporting gets no fresh "previous report" from it.
//
// A ledger that starts Unknown (a session re-arriving at a restarted
// manager) takes its first dated report as it is: receive time − IdleFor,
// no later than the receive time.
//
//	NewLedger ──────────────────────────> known (ACTIVE / IDLE)
//	NewUnknownLedger ─> UNKNOWN ─ dated report or CLI arrive ─^
type Ledger struct {
	instance     string
	events       uint64
	known        bool      // lastActivity is valid
	lastActivity time.Time // when known
	since        time.Time // when the manager first heard of the session
	lastReport   time.Time
	reported     time.Time // receive time of the last report (not an arrival); zero: none since the instance arrived
}

// NewLedger starts a ledger for a session that arrived at now: arriving is a
// CLI command (connect), so it is activity.
func NewLedger(now time.Time, instance string) *Ledger {
	return &Ledger{instance: instance, known: true, lastActivity: now, since: now, lastReport: now}
}

// NewUnknownLedger starts a ledger for a session that arrived at now
// without a person (a daemon re-arriving at a restarted manager): its last
// activity is unknown until the daemon's first dated report.
func NewUnknownLedger(now time.Time, instance string) *Ledger {
	return &Ledger{instance: instance, since: now, lastReport: now}
}

// Apply records report r received at now, with reports due every
// interval (activity.reportInterval). It reports whether last activity
// moved.
func (l *Ledger) Apply(now time.Time, r Report, interval time.Duration) bool {
	prev := l.reported
	if now.After(l.lastReport) {
		l.lastReport = now
	}
	if !r.HasActivity {
		l.reported = now
		return false
	}
	if r.Instance != l.instance {
		l.instance, l.events, l.reported = r.Instance, r.Events, now
		return false
	}
	grew := r.Events > l.events
	dated := grew || (!l.known && r.IdleKnown)
	if r.Events >= l.events {
		l.events, l.reported = r.Events, now
	}
	if !dated {
		return false // nothing new, or an older report that arrived late
	}
	at := now.Add(-max(r.IdleFor, 0))
	if grew && !prev.IsZero() {
		if at.Before(prev) {
			at = prev
		}
		if now.Sub(prev) > interval && at.After(prev.Add(interval)) {
			at = prev.Add(interval)
		}
	}
	if at.After(now) {
		at = now
	}
	if l.known && !at.After(l.lastActivity) {
		return false
	}
	l.known, l.lastActivity = true, at
	return true
}

// Arrived records that the session's daemon arrived again (a reconnect or
// a restart resuming the session): a CLI connect is activity, a silent
// reconnect is not, so the caller says which.
func (l *Ledger) Arrived(now time.Time, instance string, byCLI bool) {
	if now.After(l.lastReport) {
		l.lastReport = now
	}
	if instance != l.instance {
		l.instance, l.events, l.reported = instance, 0, time.Time{}
	}
	if byCLI && (!l.known || now.After(l.lastActivity)) {
		l.known, l.lastActivity = true, now
	}
}

// LastActivity is when the session was last used, in the manager's clock;
// ok is false while that is unknown.
func (l *Ledger) LastActivity() (at time.Time, ok bool) { return l.lastActivity, l.known }

// Idle is how long the session has been inactive at now. Unknown, it is a
// lower bound: the time since the manager first heard of the session
// (activity since then would have been reported).
func (l *Ledger) Idle(now time.Time) (d time.Duration, known bool) {
	if !l.known {
		return max(now.Sub(l.since), 0), false
	}
	return max(now.Sub(l.lastActivity), 0), true
}

// LastReport is when the daemon was last heard from.
func (l *Ledger) LastReport() time.Time { return l.lastReport }

// State classifies the session at now.
func (l *Ledger) State(now time.Time, blockTimeout, reportInterval time.Duration) State {
	switch {
	case now.Sub(l.lastReport) > UnreachableAfter*reportInterval:
		return Unreachable
	case !l.known:
		return Unknown
	case now.Sub(l.lastActivity) <= blockTimeout:
		return Active
	}
	return Idle
}

// Expired reports whether the session has been inactive for longer than
// ttl. An unknown session is inactive at least since the manager heard of
// it: it expires a TTL after that unless a dated report came.
func (l *Ledger) Expired(now time.Time, ttl time.Duration) bool {
	d, _ := l.Idle(now)
	return d > ttl
}

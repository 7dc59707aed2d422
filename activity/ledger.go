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
// data, the event counter and the time since the last event measured on
// its own monotonic clock.
type Report struct {
	Instance    string
	HasActivity bool
	Events      uint64
	IdleFor     time.Duration
}

// Ledger is the manager's record of one session's activity, in the
// manager's clock only. It is not safe for concurrent use.
//
// The rule: when a report's counter has grown since the previous report of
// the same daemon instance, last activity becomes receive time − IdleFor,
// but never later than the receive time, never earlier than the receive
// time of the previous report (the new events happened after it), and
// never earlier than it already was. Everything else is liveness only: a
// report without activity data, a counter that did not grow (a suspended
// laptop wakes with the same counter), and the first report of a new
// instance (a restarted daemon counts from zero again).
type Ledger struct {
	instance     string
	events       uint64
	lastActivity time.Time
	lastReport   time.Time
}

// NewLedger starts a ledger for a session that arrived at now: arriving is a
// CLI command (connect), so it is activity.
func NewLedger(now time.Time, instance string) *Ledger {
	return &Ledger{instance: instance, lastActivity: now, lastReport: now}
}

// Apply records report r received at now. It reports whether last activity
// moved.
func (l *Ledger) Apply(now time.Time, r Report) bool {
	prev := l.lastReport
	if now.After(l.lastReport) {
		l.lastReport = now
	}
	if !r.HasActivity {
		return false
	}
	if r.Instance != l.instance {
		l.instance, l.events = r.Instance, r.Events
		return false
	}
	if r.Events <= l.events {
		return false // nothing new, or an older report that arrived late
	}
	l.events = r.Events
	at := now.Add(-max(r.IdleFor, 0))
	if at.Before(prev) {
		at = prev
	}
	if at.After(now) {
		at = now
	}
	if !at.After(l.lastActivity) {
		return false
	}
	l.lastActivity = at
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
		l.instance, l.events = instance, 0
	}
	if byCLI && now.After(l.lastActivity) {
		l.lastActivity = now
	}
}

// LastActivity is when the session was last used, in the manager's clock.
func (l *Ledger) LastActivity() time.Time { return l.lastActivity }

// LastReport is when the daemon was last heard from.
func (l *Ledger) LastReport() time.Time { return l.lastReport }

// State classifies the session at now.
func (l *Ledger) State(now time.Time, blockTimeout, reportInterval time.Duration) State {
	switch {
	case now.Sub(l.lastReport) > UnreachableAfter*reportInterval:
		return Unreachable
	case now.Sub(l.lastActivity) <= blockTimeout:
		return Active
	}
	return Idle
}

// Expired reports whether the session has been inactive for longer than
// ttl.
func (l *Ledger) Expired(now time.Time, ttl time.Duration) bool {
	return now.Sub(l.lastActivity) > ttl
}

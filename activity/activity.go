package activity

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what happened.
type Kind uint8

const (
	TCPTunnel   Kind = iota + 1 // a new outbound TCP tunnel
	CLI                         // a tether command that reached the daemon
	UDPFlow                     // never counts; listed so callers can ask
	InboundFlow                 // never counts: an intercepted pod started it
)

func (k Kind) String() string {
	switch k {
	case TCPTunnel:
		return "tcp"
	case CLI:
		return "cli"
	case UDPFlow:
		return "udp"
	case InboundFlow:
		return "inbound"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// DefaultIgnoreTCPPorts are TCP ports whose tunnels are not activity: DNS
// over TCP is a lookup, not a person.
var DefaultIgnoreTCPPorts = []uint16{53}

// Clock reads a clock that keeps counting while the machine is suspended:
// the time since some fixed point, never a wall-clock time. The daemon
// passes internal/clock.Boot; tests inject one that can jump.
type Clock func() time.Duration

// processClock is Go's monotonic clock since the process started: it stops
// during suspend, so it is only the fallback of tests and tools.
func processClock() Clock {
	start := time.Now()
	return func() time.Duration { return time.Since(start) }
}

// Tracker records activity. Note is safe for concurrent use and allocates
// nothing: it is on the path of every new flow.
type Tracker struct {
	clock   Clock
	ignore  []uint16
	changed chan struct{} // signalled (non-blocking) on the first event after Arm, for the reporter
	armed   atomic.Bool

	// mu guards noted (the events so far) and last, kind, dst and cmd:
	// the most recent event, or one restored from an earlier process.
	mu       sync.Mutex
	noted    uint64
	known    bool          // last is valid: noted > 0, or Restore
	last     time.Duration // clock reading of the last activity
	kind     Kind
	dst      netip.AddrPort
	cmd      string
	restored string // the reason of a restored activity
}

// NewTracker returns a Tracker; clock nil means Go's monotonic clock since
// the tracker started (which stops during suspend), ignore nil means
// DefaultIgnoreTCPPorts.
func NewTracker(clock Clock, ignoreTCPPorts []uint16) *Tracker {
	if clock == nil {
		clock = processClock()
	}
	if ignoreTCPPorts == nil {
		ignoreTCPPorts = DefaultIgnoreTCPPorts
	}
	t := &Tracker{clock: clock, ignore: slices.Clone(ignoreTCPPorts), changed: make(chan struct{}, 1)}
	t.Arm()
	return t
}

// Restore dates the last activity at clock reading at, taken by an earlier
// daemon process on this boot, without counting an event: a restarted
// daemon then tells its true idle time, and a manager that lost its
// records (restarted too) learns it from the first report. The caller
// makes sure at belongs to this boot. Events noted already win.
func (t *Tracker) Restore(at time.Duration, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.noted > 0 || at > t.clock() {
		return
	}
	t.known, t.last, t.kind, t.restored = true, at, 0, reason
}

// Counts reports whether an event of kind to dst is activity.
func (t *Tracker) Counts(kind Kind, dst netip.AddrPort) bool {
	switch kind {
	case CLI:
		return true
	case TCPTunnel:
		return !slices.Contains(t.ignore, dst.Port())
	}
	return false
}

// NoteFlow records a new flow; only what Counts is activity. It reports
// whether the flow counted.
func (t *Tracker) NoteFlow(kind Kind, dst netip.AddrPort) bool {
	if !t.Counts(kind, dst) {
		return false
	}
	t.note(kind, dst, "")
	return true
}

// NoteCLI records a CLI command (name, e.g. "status").
func (t *Tracker) NoteCLI(command string) { t.note(CLI, netip.AddrPort{}, command) }

func (t *Tracker) note(kind Kind, dst netip.AddrPort, cmd string) {
	now := t.clock()
	t.mu.Lock()
	t.last, t.kind, t.dst, t.cmd = now, kind, dst, cmd
	t.noted++
	t.known = true
	t.mu.Unlock()
	// Only the first event after Arm signals: a busy daemon does not wake
	// the reporter on every new connection (it reports them on its timer).
	if t.armed.Load() && t.armed.CompareAndSwap(true, false) {
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
}

// Snapshot is the tracker's state at one moment.
type Snapshot struct {
	Events uint64 // activity events since the tracker started
	// Known: IdleFor, At and Reason describe a real activity, one of
	// these events or one restored from an earlier process (Events 0).
	Known   bool
	IdleFor time.Duration // since the last activity, on the clock; 0 unless Known
	At      time.Duration // the clock reading of the last activity; 0 unless Known
	Reason  string        // "tcp 198.18.2.2:8080", "cli status"; empty unless Known
}

// Snapshot returns the current state.
func (t *Tracker) Snapshot() Snapshot {
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Snapshot{Events: t.noted}
	if !t.known {
		return s
	}
	s.Known, s.IdleFor, s.At = true, max(now-t.last, 0), t.last
	switch t.kind {
	case TCPTunnel:
		s.Reason = "tcp " + t.dst.String()
	case CLI:
		s.Reason = "cli " + t.cmd
	default:
		s.Reason = t.restored
	}
	return s
}

// Changed is signalled after the first activity since the tracker started
// or since the last Arm; one signal may stand for several events.
func (t *Tracker) Changed() <-chan struct{} { return t.changed }

// Arm asks for a signal on Changed at the next activity.
func (t *Tracker) Arm() { t.armed.Store(true) }

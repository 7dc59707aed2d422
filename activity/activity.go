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

// Clock is the monotonic clock the tracker reads; tests inject one.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Tracker records activity. Note is safe for concurrent use and allocates
// nothing: it is on the path of every new flow.
type Tracker struct {
	clock   Clock
	start   time.Time // monotonic reference; durations since it never jump with the wall clock
	ignore  []uint16
	changed chan struct{} // signalled (non-blocking) on the first event after Arm, for the reporter
	armed   atomic.Bool

	// mu guards noted (the events so far) and last, kind, dst and cmd:
	// the most recent event.
	mu    sync.Mutex
	noted uint64
	last  time.Duration // since start; valid when noted > 0
	kind  Kind
	dst   netip.AddrPort
	cmd   string
}

// NewTracker returns a Tracker; clock nil means the system's monotonic
// clock, ignore nil means DefaultIgnoreTCPPorts.
func NewTracker(clock Clock, ignoreTCPPorts []uint16) *Tracker {
	if clock == nil {
		clock = systemClock{}
	}
	if ignoreTCPPorts == nil {
		ignoreTCPPorts = DefaultIgnoreTCPPorts
	}
	t := &Tracker{clock: clock, start: clock.Now(), ignore: slices.Clone(ignoreTCPPorts), changed: make(chan struct{}, 1)}
	t.Arm()
	return t
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
	now := t.clock.Now().Sub(t.start)
	t.mu.Lock()
	t.last, t.kind, t.dst, t.cmd = now, kind, dst, cmd
	t.noted++
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
	Events  uint64        // activity events since the tracker started
	IdleFor time.Duration // since the last event; 0 when Events is 0
	Reason  string        // "tcp 198.18.2.2:8080", "cli status"; empty when Events is 0
}

// Snapshot returns the current state.
func (t *Tracker) Snapshot() Snapshot {
	now := t.clock.Now().Sub(t.start)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.noted
	if n == 0 {
		return Snapshot{}
	}
	s := Snapshot{Events: n, IdleFor: max(now-t.last, 0)}
	switch t.kind {
	case TCPTunnel:
		s.Reason = "tcp " + t.dst.String()
	case CLI:
		s.Reason = "cli " + t.cmd
	}
	return s
}

// Changed is signalled after the first activity since the tracker started
// or since the last Arm; one signal may stand for several events.
func (t *Tracker) Changed() <-chan struct{} { return t.changed }

// Arm asks for a signal on Changed at the next activity.
func (t *Tracker) Arm() { t.armed.Store(true) }

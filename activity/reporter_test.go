package activity

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// sink records the reports a Reporter sends.
type sink struct {
	mu   sync.Mutex
	got  []Snapshot
	when []time.Time
	ch   chan struct{}
}

func (s *sink) send(_ context.Context, snap Snapshot) {
	s.mu.Lock()
	s.got = append(s.got, snap)
	s.when = append(s.when, time.Now())
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

func (s *sink) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.got) }

func (s *sink) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for s.count() < n {
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("only %d reports, want %d", s.count(), n)
		}
	}
}

func TestReporterRhythm(t *testing.T) {
	const interval = time.Second
	tr := NewTracker(nil, nil)
	s := &sink{ch: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { NewReporter(tr, interval, s.send).Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	s.wait(t, 1) // the first report goes out at once
	if s.got[0].Events != 0 {
		t.Fatalf("first report: %+v", s.got[0])
	}
	// The first activity after a quiet period is reported at once, well
	// before the heartbeat would be due.
	time.Sleep(interval / 3)
	start := time.Now()
	tr.NoteFlow(TCPTunnel, netip.MustParseAddrPort("198.18.2.2:80"))
	s.wait(t, 2)
	if d := s.when[1].Sub(start); d > interval/2 {
		t.Fatalf("first activity reported after %v", d)
	}
	// Continued activity: at most one report per interval.
	for range 20 {
		tr.NoteFlow(TCPTunnel, netip.MustParseAddrPort("198.18.2.2:80"))
		time.Sleep(interval / 20)
	}
	s.mu.Lock()
	n := len(s.got)
	s.mu.Unlock()
	if n > 2+2 {
		t.Fatalf("%d reports during one interval of activity and a bit", n)
	}
	// Heartbeats continue while idle, carrying the same counter.
	before := s.count()
	s.wait(t, before+2)
	s.mu.Lock()
	last, prev := s.got[len(s.got)-1], s.got[len(s.got)-2]
	s.mu.Unlock()
	if last.Events != prev.Events || last.Events != 21 {
		t.Fatalf("heartbeats: %+v then %+v", prev, last)
	}
}

// A new activity.reportInterval from the manager takes effect at once: a
// reporter told an hour paces itself by the new interval.
func TestReporterSetInterval(t *testing.T) {
	tr := NewTracker(nil, nil)
	s := &sink{ch: make(chan struct{}, 1)}
	r := NewReporter(tr, time.Hour, s.send)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	s.wait(t, 1)
	r.SetInterval(-time.Second) // ignored: not an interval
	r.SetInterval(50 * time.Millisecond)
	s.wait(t, 4) // within s.wait's 5 s, not an hour
}

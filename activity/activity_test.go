package activity

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that counts suspend, moved by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Duration
}

func (c *fakeClock) read() time.Duration { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.now += d; c.mu.Unlock() }

func TestWhatCounts(t *testing.T) {
	tr := NewTracker(nil, nil)
	web := netip.MustParseAddrPort("198.18.2.2:8080")
	dns := netip.MustParseAddrPort("198.18.2.2:53")
	for _, tc := range []struct {
		name string
		kind Kind
		dst  netip.AddrPort
		want bool
	}{
		{"new TCP tunnel", TCPTunnel, web, true},
		{"TCP to an ignored port (DNS over TCP)", TCPTunnel, dns, false},
		{"CLI command", CLI, netip.AddrPort{}, true},
		{"UDP, DNS above all", UDPFlow, dns, false},
		{"UDP elsewhere", UDPFlow, web, false},
		{"inbound flow from an intercepted pod", InboundFlow, web, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tr.Counts(tc.kind, tc.dst); got != tc.want {
				t.Fatalf("Counts = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTrackerSnapshot(t *testing.T) {
	clk := &fakeClock{now: 1000 * time.Second}
	tr := NewTracker(clk.read, []uint16{53, 5353})
	if s := tr.Snapshot(); s.Events != 0 || s.Reason != "" {
		t.Fatalf("fresh tracker: %+v", s)
	}
	tr.NoteFlow(UDPFlow, netip.MustParseAddrPort("198.18.2.2:53"))
	tr.NoteFlow(TCPTunnel, netip.MustParseAddrPort("198.18.2.2:5353"))
	if s := tr.Snapshot(); s.Events != 0 {
		t.Fatalf("UDP and an ignored port counted: %+v", s)
	}
	tr.NoteFlow(TCPTunnel, netip.MustParseAddrPort("198.18.2.2:8080"))
	clk.Add(3 * time.Second)
	s := tr.Snapshot()
	if s.Events != 1 || s.IdleFor != 3*time.Second || s.Reason != "tcp 198.18.2.2:8080" {
		t.Fatalf("after one tunnel: %+v", s)
	}
	tr.NoteCLI("intercept")
	if s := tr.Snapshot(); s.Events != 2 || s.IdleFor != 0 || s.Reason != "cli intercept" {
		t.Fatalf("after a command: %+v", s)
	}
	select {
	case <-tr.Changed():
	default:
		t.Fatal("no change signal")
	}
}

// Only the first event after Arm signals Changed.
func TestChangedOncePerArm(t *testing.T) {
	tr := NewTracker(nil, nil)
	dst := netip.MustParseAddrPort("198.18.2.2:8080")
	signals := func() int {
		n := 0
		for {
			select {
			case <-tr.Changed():
				n++
			default:
				return n
			}
		}
	}
	for range 3 {
		tr.NoteFlow(TCPTunnel, dst)
	}
	if n := signals(); n != 1 {
		t.Fatalf("%d signals for three events after start, want 1", n)
	}
	tr.NoteCLI("status")
	if n := signals(); n != 0 {
		t.Fatalf("%d signals without Arm, want 0", n)
	}
	tr.Arm()
	tr.NoteFlow(TCPTunnel, dst)
	if n := signals(); n != 1 {
		t.Fatalf("%d signals after Arm, want 1", n)
	}
	if s := tr.Snapshot(); s.Events != 5 {
		t.Fatalf("events %d, want 5 (signals or not)", s.Events)
	}
}

func TestNoteFlowAllocatesNothing(t *testing.T) {
	tr := NewTracker(nil, nil)
	dst := netip.MustParseAddrPort("198.18.2.2:8080")
	if n := testing.AllocsPerRun(1000, func() { tr.NoteFlow(TCPTunnel, dst) }); n != 0 {
		t.Fatalf("NoteFlow allocates %v per call", n)
	}
}

func BenchmarkNoteFlow(b *testing.B) {
	tr := NewTracker(nil, nil)
	dst := netip.MustParseAddrPort("198.18.2.2:8080")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.NoteFlow(TCPTunnel, dst)
		}
	})
}

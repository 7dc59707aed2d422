package activity

import (
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

package manager

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/manager"
)

func TestParseLive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		data   map[string]string
		rules  Rules
		limits Limits
		errs   []string // each must appear in the error; none: no error
	}{
		{name: "empty: the defaults", data: nil, rules: DefaultRules, limits: DefaultLimits},
		{
			name: "every key",
			data: map[string]string{
				"grpc.connectionTTL": "2h", "intercept.inactiveBlockTimeout": "5m", "activity.reportInterval": " 10s ",
				"limits.sessionsPerUser": "2", "limits.tcpFlowsPerSession": "100", "limits.udpFlowsPerSession": "50",
				"limits.interceptsPerSession": "3", "limits.noticesPerSession": "4",
			},
			rules:  Rules{ConnectionTTL: 2 * time.Hour, InactiveBlockTimeout: 5 * time.Minute, ReportInterval: 10 * time.Second},
			limits: Limits{SessionsPerUser: 2, TCPFlowsPerSession: 100, UDPFlowsPerSession: 50, InterceptsPerSession: 3, NoticesPerSession: 4},
		},
		{
			name:  "one key, the rest default",
			data:  map[string]string{"intercept.inactiveBlockTimeout": "1h30m"},
			rules: Rules{ConnectionTTL: DefaultRules.ConnectionTTL, InactiveBlockTimeout: 90 * time.Minute, ReportInterval: DefaultRules.ReportInterval}, limits: DefaultLimits,
		},
		{name: "not a duration", data: map[string]string{"intercept.inactiveBlockTimeout": "5 minutes"}, errs: []string{`intercept.inactiveBlockTimeout: "5 minutes" is not a positive duration`}},
		{name: "a bare number is not a duration", data: map[string]string{"grpc.connectionTTL": "300"}, errs: []string{`grpc.connectionTTL: "300"`}},
		{name: "zero", data: map[string]string{"activity.reportInterval": "0s"}, errs: []string{`activity.reportInterval: "0s"`}},
		{name: "negative", data: map[string]string{"grpc.connectionTTL": "-1h"}, errs: []string{`grpc.connectionTTL: "-1h"`}},
		{name: "limit not a number", data: map[string]string{"limits.sessionsPerUser": "many"}, errs: []string{`limits.sessionsPerUser: "many" is not a positive whole number`}},
		{name: "limit zero", data: map[string]string{"limits.noticesPerSession": "0"}, errs: []string{`limits.noticesPerSession: "0"`}},
		{name: "a typo is not the default", data: map[string]string{"intercept.inactiveBlockTimout": "5m"}, errs: []string{"intercept.inactiveBlockTimout: not a key", "known: activity.reportInterval"}},
		{name: "a start-only key", data: map[string]string{"grpc.keepaliveTime": "1m"}, errs: []string{"grpc.keepaliveTime: not a key the traffic manager changes while running", "restart"}},
		{
			name: "every error at once",
			data: map[string]string{"grpc.connectionTTL": "x", "limits.tcpFlowsPerSession": "-3", "zzz": "1"},
			errs: []string{`grpc.connectionTTL: "x"`, `limits.tcpFlowsPerSession: "-3"`, "zzz: not a key"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, l, err := ParseLive(tc.data)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if r != tc.rules || l != tc.limits {
					t.Fatalf("got %+v %+v, want %+v %+v", r, l, tc.rules, tc.limits)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; got %+v %+v", r, l)
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
		})
	}
}

// liveData is the configmap data that gives r and l.
func liveData(r Rules, l Limits) map[string]string {
	data := map[string]string{}
	for _, k := range liveKeys {
		if k.duration != nil {
			data[k.key] = k.duration(&r).String()
		} else {
			data[k.key] = fmt.Sprint(*k.limit(&l))
		}
	}
	return data
}

// FuzzParseLive: whatever a user writes into the configmap, the parser
// does not panic; what it accepts is positive and says the same again;
// what it refuses is named.
func FuzzParseLive(f *testing.F) {
	f.Add("intercept.inactiveBlockTimeout", "5m")
	f.Add("grpc.connectionTTL", "1h30m")
	f.Add("activity.reportInterval", "0.5s")
	f.Add("limits.sessionsPerUser", "8")
	f.Add("limits.udpFlowsPerSession", "99999999999999999999")
	f.Add("grpc.keepaliveTime", "1m")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, key, value string) {
		r, l, err := ParseLive(map[string]string{key: value})
		if err != nil {
			if !strings.Contains(err.Error(), key+":") {
				t.Fatalf("error does not name %q: %v", key, err)
			}
			return
		}
		if err := checkLive(r, l); err != nil {
			t.Fatalf("accepted a bad value: %v", err)
		}
		r2, l2, err := ParseLive(liveData(r, l))
		if err != nil || r2 != r || l2 != l {
			t.Fatalf("round trip: %+v %+v → %+v %+v, %v", r, l, r2, l2, err)
		}
	})
}

func TestSetRulesRefusesBadValuesAndKeepsTheOld(t *testing.T) {
	s := newTestServer(t)
	bad := DefaultRules
	bad.InactiveBlockTimeout = 0
	badLimits := DefaultLimits
	badLimits.SessionsPerUser = -1
	err := s.SetRules(bad, badLimits)
	for _, want := range []string{"intercept.inactiveBlockTimeout", "limits.sessionsPerUser"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	if r, l := s.Rules(); r != DefaultRules || l != DefaultLimits {
		t.Fatalf("a refused change applied: %+v %+v", r, l)
	}
}

// A shorter intercept.inactiveBlockTimeout decides the next conflict and
// the views at once: bob, refused while alice's block holds under 10m,
// wins after six idle minutes once the rule is 5m.
func TestSetRulesBlockTimeoutDecidesTheNextConflict(t *testing.T) {
	s, clk, u := newInterceptServer(t)
	if _, err := s.CreateIntercept(u["alice"], header("a", "alice", "alice")); err != nil {
		t.Fatal(err)
	}
	clk.Add(6 * time.Minute)
	if _, err := s.CreateIntercept(u["bob"], header("wide", "bob", ".*")); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("under the 10m rule alice still blocks: %v", err)
	}
	if v := viewOf(t, s, u["bob"], "alice"); !v.HoldsBlockRight || v.BlockRightLeftMs != (4*time.Minute).Milliseconds() {
		t.Fatalf("alice's view under the 10m rule: %v", v)
	}
	r := DefaultRules
	r.InactiveBlockTimeout = 5 * time.Minute
	if err := s.SetRules(r, DefaultLimits); err != nil {
		t.Fatal(err)
	}
	if v := viewOf(t, s, u["bob"], "alice"); v.HoldsBlockRight || v.BlockRightLeftMs != 0 {
		t.Fatalf("alice's view under the 5m rule: %v", v)
	}
	if _, err := s.CreateIntercept(u["bob"], header("wide", "bob", ".*")); err != nil {
		t.Fatalf("under the 5m rule alice no longer blocks: %v", err)
	}
	if a := states(t, s, u["alice"])["a"]; a.State != StateConflict || !strings.Contains(a.Message, "intercept.inactiveBlockTimeout (5m0s)") {
		t.Fatalf("alice's intercept: %v", a)
	}
}

func viewOf(t *testing.T, s *Server, ctx context.Context, user string) *pb.SessionView {
	t.Helper()
	list, err := s.Sessions(ctx, &pb.SessionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range list.Sessions {
		if v.User == user {
			return v
		}
	}
	t.Fatalf("no session of %s", user)
	return nil
}

// A shorter grpc.connectionTTL ends, at the reaper's next round, a session
// the old one kept, and paces the reaper by itself.
func TestSetRulesConnectionTTLForTheReaper(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)}
	s := newClockedServer(t, c)
	resp, _ := s.Arrive(context.Background(), &pb.ArriveRequest{User: "alice", DaemonInstance: "d1", ByCli: true})
	ctx := withCreds(resp.SessionId, resp.SessionSecret)
	c.now = c.now.Add(2 * time.Hour)
	s.Expire(c.now)
	if _, err := s.authenticate(ctx); err != nil {
		t.Fatalf("ended under the 24h rule: %v", err)
	}
	r := DefaultRules
	r.ConnectionTTL = time.Hour
	if err := s.SetRules(r, DefaultLimits); err != nil {
		t.Fatal(err)
	}
	s.Expire(c.now)
	if _, err := s.Report(ctx, &pb.ReportRequest{DaemonInstance: "d1"}); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "inactive for 1h0m0s (grpc.connectionTTL)") {
		t.Fatalf("after the TTL became 1h: %v", err)
	}
	r.ConnectionTTL = 2 * time.Second
	if err := s.SetRules(r, DefaultLimits); err != nil {
		t.Fatal(err)
	}
	if got := s.reapEvery(); got != 250*time.Millisecond {
		t.Fatalf("reaper pace for a 2s TTL: %v", got)
	}
}

// A new activity.reportInterval reaches the daemon with its next report's
// answer, and until then the manager judges it by the interval it told it:
// a daemon reporting every 30s is not UNREACHABLE after 20s because the
// rule became 5s.
func TestSetRulesReportIntervalReachesDaemons(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)}
	s := newClockedServer(t, c)
	resp, _ := s.Arrive(context.Background(), &pb.ArriveRequest{User: "alice", DaemonInstance: "d1", ByCli: true})
	ctx := withCreds(resp.SessionId, resp.SessionSecret)
	rep, err := s.Report(ctx, &pb.ReportRequest{DaemonInstance: "d1"})
	if err != nil || rep.ReportIntervalMs != DefaultRules.ReportInterval.Milliseconds() {
		t.Fatalf("first answer: %v, %v", rep, err)
	}
	r := DefaultRules
	r.ReportInterval = 5 * time.Second
	if err := s.SetRules(r, DefaultLimits); err != nil {
		t.Fatal(err)
	}
	state := func() string {
		t.Helper()
		list, err := s.Sessions(ctx, &pb.SessionsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return list.Sessions[0].State
	}
	c.now = c.now.Add(20 * time.Second)
	if st := state(); st == "UNREACHABLE" {
		t.Fatal("judged by the new 5s interval before the daemon learned it")
	}
	rep, err = s.Report(ctx, &pb.ReportRequest{DaemonInstance: "d1"})
	if err != nil || rep.ReportIntervalMs != 5000 {
		t.Fatalf("answer after the change: %v, %v", rep, err)
	}
	c.now = c.now.Add(16 * time.Second)
	if st := state(); st != "UNREACHABLE" {
		t.Fatalf("three 5s intervals without a report after it learned 5s: %s", st)
	}
	if a, _ := s.Arrive(context.Background(), &pb.ArriveRequest{User: "bob", DaemonInstance: "d2"}); a.ReportIntervalMs != 5000 {
		t.Fatalf("a new arrival is told %d ms", a.ReportIntervalMs)
	}
}

// New limits count from the next session.
func TestSetRulesLimits(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	if _, err := s.Arrive(ctx, &pb.ArriveRequest{User: "alice", Host: "one"}); err != nil {
		t.Fatal(err)
	}
	l := DefaultLimits
	l.SessionsPerUser = 1
	if err := s.SetRules(DefaultRules, l); err != nil {
		t.Fatal(err)
	}
	_, err := s.Arrive(ctx, &pb.ArriveRequest{User: "alice", Host: "two"})
	refusedFor(t, err, "limits.sessionsPerUser")
}

package manager

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

func newTestServer(t *testing.T) *Server { return newClockedServer(t, nil) }

// newClockedServer is a manager of 198.18.2.0/24 on c's time (the wall
// clock when c is nil), shut down when the test ends.
func newClockedServer(t *testing.T, c *clock) *Server {
	t.Helper()
	cfg := Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Log: slog.New(slog.DiscardHandler)}
	if c != nil {
		cfg.Now = c.Now
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func withCreds(id, secret string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(wire.MDSession, id, wire.MDSecret, secret))
}

func TestArriveResume(t *testing.T) {
	s := newTestServer(t)
	ctx := context.Background()
	first, err := s.Arrive(ctx, &pb.ArriveRequest{User: "alice", Host: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Subnets) != 1 || first.Subnets[0] != "198.18.2.0/24" || first.Resumed {
		t.Fatalf("first arrive: %v", first)
	}
	again, err := s.Arrive(ctx, &pb.ArriveRequest{User: "alice", ResumeSessionId: first.SessionId, ResumeSessionSecret: first.SessionSecret})
	if err != nil || !again.Resumed || again.SessionId != first.SessionId {
		t.Fatalf("resume with the right secret: %v, %v", again, err)
	}
	stolen, err := s.Arrive(ctx, &pb.ArriveRequest{User: "mallory", ResumeSessionId: first.SessionId, ResumeSessionSecret: "guess"})
	if err != nil || stolen.Resumed || stolen.SessionId == first.SessionId {
		t.Fatalf("resume with a wrong secret must open a new session: %v, %v", stolen, err)
	}
}

func TestAuthenticate(t *testing.T) {
	s := newTestServer(t)
	resp, err := s.Arrive(context.Background(), &pb.ArriveRequest{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want codes.Code
	}{
		{"valid", withCreds(resp.SessionId, resp.SessionSecret), codes.OK},
		{"no metadata", context.Background(), codes.Unauthenticated},
		{"wrong secret", withCreds(resp.SessionId, resp.SessionSecret+"x"), codes.Unauthenticated},
		{"unknown session", withCreds("nope", resp.SessionSecret), codes.Unauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.authenticate(tc.ctx)
			if got := status.Code(err); got != tc.want {
				t.Fatalf("code %v, want %v (%v)", got, tc.want, err)
			}
		})
	}
}

func TestDepartEndsSession(t *testing.T) {
	s := newTestServer(t)
	resp, _ := s.Arrive(context.Background(), &pb.ArriveRequest{User: "alice"})
	ctx := withCreds(resp.SessionId, resp.SessionSecret)
	sess, err := s.authenticate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Depart(ctx, &pb.DepartRequest{}); err != nil {
		t.Fatal(err)
	}
	if sess.ctx.Err() == nil {
		t.Fatal("the session's flows were not ended")
	}
	if _, err := s.authenticate(ctx); status.Code(err) != codes.NotFound {
		t.Fatalf("after depart: %v, want NotFound (the session ended)", err)
	}
}

func TestAllowedOnlyInsideSubnets(t *testing.T) {
	s := newTestServer(t)
	for addr, want := range map[string]bool{"198.18.2.9": true, "198.18.3.1": false, "127.0.0.1": false} {
		if got := s.allowed(netip.MustParseAddr(addr)); got != want {
			t.Errorf("allowed(%s) = %v", addr, got)
		}
	}
}

// clock is a manager clock the test moves.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestTTLExpiryWithoutWaiting(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)}
	s := newClockedServer(t, c)
	resp, _ := s.Arrive(context.Background(), &pb.ArriveRequest{User: "alice", DaemonInstance: "d1", ByCli: true})
	ctx := withCreds(resp.SessionId, resp.SessionSecret)
	sess, _ := s.authenticate(ctx)

	// Heartbeats and a DNS loop keep reporting for a day, without activity.
	for h := 1; h <= 23; h++ {
		c.now = c.now.Add(time.Hour)
		if _, err := s.Report(ctx, &pb.ReportRequest{DaemonInstance: "d1", Activity: &pb.Activity{Events: 0}}); err != nil {
			t.Fatalf("report at %dh: %v", h, err)
		}
		s.Expire(c.now)
	}
	c.now = c.now.Add(time.Hour) // exactly 24h: not yet
	s.Expire(c.now)
	if _, err := s.authenticate(ctx); err != nil {
		t.Fatalf("ended at exactly the TTL: %v", err)
	}
	c.now = c.now.Add(time.Second)
	s.Expire(c.now)
	if sess.ctx.Err() == nil {
		t.Fatal("flows of the expired session were not ended")
	}
	_, err := s.Report(ctx, &pb.ReportRequest{DaemonInstance: "d1"})
	if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), "inactive for 24h0m0s (grpc.connectionTTL)") {
		t.Fatalf("report after expiry: %v", err)
	}
}

func TestReportViewAndActivity(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)}
	s := newClockedServer(t, c)
	resp, _ := s.Arrive(context.Background(), &pb.ArriveRequest{User: "alice", DaemonInstance: "d1", ByCli: true})
	ctx := withCreds(resp.SessionId, resp.SessionSecret)
	c.now = c.now.Add(11 * time.Minute)
	r, _ := s.Report(ctx, &pb.ReportRequest{DaemonInstance: "d1"})
	if v := r.Session; v.State != "IDLE" || v.HoldsBlockRight || v.IdleMs != (11*time.Minute).Milliseconds() {
		t.Fatalf("after 11 quiet minutes: %v", v)
	}
	c.now = c.now.Add(5 * time.Second)
	r, _ = s.Report(ctx, &pb.ReportRequest{DaemonInstance: "d1", Activity: &pb.Activity{Events: 1, IdleForMs: 2000}})
	if v := r.Session; v.State != "ACTIVE" || !v.HoldsBlockRight || v.IdleMs != 2000 || v.BlockRightLeftMs != (10*time.Minute-2*time.Second).Milliseconds() {
		t.Fatalf("after activity 2s ago: %v", v)
	}
	list, err := s.Sessions(ctx, &pb.SessionsRequest{})
	if err != nil || len(list.Sessions) != 1 || list.Sessions[0].User != "alice" {
		t.Fatalf("sessions: %v, %v", list, err)
	}
}

// TestArriveRefusesIncompatibleDaemon: a daemon whose protocol the
// manager cannot work with is refused at Arrive, and the refusal says
// which side to upgrade; an older build without build info is protocol 1.
func TestArriveRefusesIncompatibleDaemon(t *testing.T) {
	s := newTestServer(t)
	for _, tc := range []struct {
		name    string
		build   *pb.BuildInfo
		wantErr string
	}{
		{name: "same protocol", build: &pb.BuildInfo{Protocol: wire.Protocol, MinProtocol: wire.MinProtocol}},
		{name: "no build info", build: nil},
		{name: "daemon needs a newer manager", build: &pb.BuildInfo{Version: "v9", Protocol: wire.Protocol + 1, MinProtocol: wire.Protocol + 1},
			wantErr: "the traffic manager speaks protocol 1, but the tether daemon needs at least protocol 2: upgrade the traffic manager"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.Arrive(context.Background(), &pb.ArriveRequest{User: "alice", DaemonInstance: "d-" + tc.name, Build: tc.build})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if b := resp.ManagerBuild; b.GetProtocol() != wire.Protocol || b.GetVersion() == "" {
					t.Fatalf("manager build %v", b)
				}
				return
			}
			if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != tc.wantErr {
				t.Fatalf("Arrive: %v, want FailedPrecondition %q", err, tc.wantErr)
			}
		})
	}
	if n := len(s.sessions); n != 2 {
		t.Fatalf("%d sessions, want 2: the refused daemon must not get one", n)
	}
}

// TestWatchAgentRefusesIncompatibleAgent: an agent whose protocol the
// manager cannot work with is refused, naming the side to upgrade.
func TestWatchAgentRefusesIncompatibleAgent(t *testing.T) {
	l := newGRPCLab(t, testPolicy)
	newer := &pb.BuildInfo{Version: "v9", Protocol: wire.Protocol + 1, MinProtocol: wire.Protocol + 1}
	stream, err := l.c.WatchAgent(as("t-web-agent"), &pb.WatchAgentRequest{Workload: "default/web", Ports: []uint32{8080}, Build: newer})
	if err == nil {
		_, err = stream.Recv()
	}
	wantRefusal(t, "WatchAgent of a newer agent", err, codes.FailedPrecondition,
		"the traffic manager speaks protocol 1, but the agent of default/web needs at least protocol 2: upgrade the traffic manager")
	ok := &pb.BuildInfo{Protocol: wire.Protocol, MinProtocol: wire.MinProtocol}
	stream, err = l.c.WatchAgent(as("t-web-agent"), &pb.WatchAgentRequest{Workload: "default/web", Ports: []uint32{8080}, Build: ok})
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil {
		t.Fatalf("WatchAgent of a compatible agent: %v", err)
	}
}

// TestTTLIsFinal: a session the TTL ended is not resumed by a daemon that
// comes back by itself; only a connect by a person opens a new one.
func TestTTLIsFinal(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)}
	s := newClockedServer(t, c)
	first, _ := s.Arrive(context.Background(), &pb.ArriveRequest{User: "alice", DaemonInstance: "d1", ByCli: true})
	c.now = c.now.Add(25 * time.Hour)
	s.Expire(c.now)
	resume := func(secret string, byCLI bool) (*pb.ArriveResponse, error) {
		return s.Arrive(context.Background(), &pb.ArriveRequest{User: "alice", DaemonInstance: "d2",
			ResumeSessionId: first.SessionId, ResumeSessionSecret: secret, ByCli: byCLI})
	}
	_, err := resume(first.SessionSecret, false)
	if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), "inactive for 24h0m0s (grpc.connectionTTL)") {
		t.Fatalf("silent resume of an expired session: %v, want NotFound with the reason", err)
	}
	if n := len(s.sessions); n != 0 {
		t.Fatalf("%d sessions after a refused resume", n)
	}
	if other, err := resume("guess", false); err != nil || other.Resumed || other.SessionId == first.SessionId {
		t.Fatalf("someone without the secret: %v, %v; want a new session and no word of the ending", other, err)
	}
	again, err := resume(first.SessionSecret, true)
	if err != nil || again.Resumed || again.SessionId == first.SessionId {
		t.Fatalf("tether connect after the TTL: %v, %v; want a new session", again, err)
	}
}

// TestRestartedManagerDoesNotMakeActive: a daemon re-arriving by itself at a
// manager that does not know its session is UNKNOWN (no block right, not
// expired) until its first report dates the last activity.
func TestRestartedManagerDoesNotMakeActive(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)}
	s := newClockedServer(t, c)
	resp, _ := s.Arrive(context.Background(), &pb.ArriveRequest{User: "alice", DaemonInstance: "d1",
		ResumeSessionId: "before-the-restart", ResumeSessionSecret: "s"})
	ctx := withCreds(resp.SessionId, resp.SessionSecret)
	list, _ := s.Sessions(ctx, &pb.SessionsRequest{})
	if v := list.Sessions[0]; v.State != "UNKNOWN" || v.HoldsBlockRight || v.BlockRightLeftMs != 0 {
		t.Fatalf("re-arrived at a restarted manager: %v", v)
	}
	c.now = c.now.Add(time.Second)
	r, _ := s.Report(ctx, &pb.ReportRequest{DaemonInstance: "d1"})
	if v := r.Session; v.State != "UNKNOWN" {
		t.Fatalf("after a report without activity data: %v", v)
	}
	c.now = c.now.Add(23 * time.Hour)
	s.Expire(c.now)
	if _, err := s.authenticate(ctx); err != nil {
		t.Fatalf("unknown is no reason to end a session: %v", err)
	}
	// The daemon's first dated report: its last activity (an earlier
	// daemon process's) was 20 minutes ago.
	r, _ = s.Report(ctx, &pb.ReportRequest{DaemonInstance: "d1", Activity: &pb.Activity{IdleForMs: (20 * time.Minute).Milliseconds(), IdleKnown: true}})
	if v := r.Session; v.State != "IDLE" || v.IdleMs != (20*time.Minute).Milliseconds() {
		t.Fatalf("after the first dated report: %v", v)
	}
}

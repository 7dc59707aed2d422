package manager

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/manager"
)

func newTestServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func withCreds(id, secret string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(MDSession, id, MDSecret, secret))
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
	if _, err := s.authenticate(ctx); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("after depart: %v", err)
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

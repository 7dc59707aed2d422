package daemon

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/daemon"
)

// uids no test runs as (privileged also allows the daemon's own uid).
const (
	alice = 4000001
	bob   = 4000002
)

func TestCheckRule(t *testing.T) {
	s1, s2 := &session{}, &session{}
	for _, tc := range []struct {
		name   string
		owner  *owner
		cur    *session
		caller uint32
		ok     bool
	}{
		{"no session", &owner{}, nil, bob, true},
		{"session without owner", &owner{}, s1, bob, true},
		{"owner", &owner{sess: s1, uid: alice}, s1, alice, true},
		{"root with an owner", &owner{sess: s1, uid: alice}, s1, 0, true},
		{"someone else", &owner{sess: s1, uid: alice}, s1, bob, false},
		{"owner of an ended session", &owner{sess: s1, uid: alice}, nil, bob, true},
		{"owner of an earlier session", &owner{sess: s1, uid: alice}, s2, bob, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.owner.checkLocked(tc.cur, tc.caller)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if status.Code(err) != codes.PermissionDenied {
					t.Errorf("code %v, want PermissionDenied", status.Code(err))
				}
				want := "the tether daemon is in use by an unknown user (uid 4000001); you are uid 4000002"
				if msg := status.Convert(err).Message(); msg != want {
					t.Errorf("message %q, want %q", msg, want)
				}
			}
		})
	}
}

func TestClaimant(t *testing.T) {
	md := func(v string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(MDForUID, v))
	}
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		caller uint32
		want   uint32
		ok     bool
	}{
		{"user", context.Background(), alice, alice, true},
		{"root", context.Background(), 0, 0, false},
		{"sudo", md(strconv.Itoa(alice)), 0, alice, true},
		{"sudo -u root", md("0"), 0, 0, false},
		{"garbage", md("alice"), 0, 0, false},
		{"a user cannot claim for another", md(strconv.Itoa(bob)), alice, alice, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := claimant(tc.ctx, tc.caller)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("claimant = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestAuthorize runs the interceptor through a session's life: the first
// non-root user to connect owns it until it ends.
func TestAuthorize(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := &Daemon{log: log}
	d.cfg.Socket = filepath.Join(t.TempDir(), "daemon.sock")
	connect := &grpc.UnaryServerInfo{FullMethod: pb.Daemon_Connect_FullMethodName}
	quit := &grpc.UnaryServerInfo{FullMethod: pb.Daemon_Quit_FullMethodName}
	statusCall := &grpc.UnaryServerInfo{FullMethod: pb.Daemon_Status_FullMethodName}
	as := func(uid uint32) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: peerInfo{uid: uid}})
	}
	// As Daemon.connect: a new session or the one up, claimed in the
	// same step.
	startSession := func(ctx context.Context, _ any) (any, error) {
		d.owner.mu.Lock()
		defer d.owner.mu.Unlock()
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.sess == nil {
			d.sess = &session{}
		}
		d.claimLocked(ctx, d.sess)
		return nil, nil
	}
	endSession := func(context.Context, any) (any, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.sess = nil
		return nil, nil
	}
	noop := func(context.Context, any) (any, error) { return nil, nil }
	step := func(name string, ctx context.Context, info *grpc.UnaryServerInfo, h grpc.UnaryHandler, ok bool) {
		t.Helper()
		_, err := d.authorize(ctx, nil, info, h)
		if (err == nil) != ok {
			t.Fatalf("%s: err = %v, want ok=%v", name, err, ok)
		}
	}
	step("root connects: no owner", as(0), connect, startSession, true)
	step("bob may look", as(bob), statusCall, noop, true)
	step("alice connects to it and owns it", as(alice), connect, startSession, true)
	step("bob may not look", as(bob), statusCall, noop, false)
	step("bob may not connect", as(bob), connect, startSession, false)
	step("root may", as(0), statusCall, noop, true)
	step("an unknown peer is left to the socket's mode", context.Background(), statusCall, noop, true)
	step("alice quits", as(alice), quit, endSession, true)
	step("bob connects a new session", as(bob), connect, startSession, true)
	step("now alice may not", as(alice), statusCall, noop, false)
	step("root quits", as(0), quit, endSession, true)
	sudo := metadata.NewIncomingContext(as(0), metadata.Pairs(MDForUID, strconv.Itoa(alice)))
	step("sudo tether connect by alice", sudo, connect, startSession, true)
	step("bob may not look", as(bob), statusCall, noop, false)
	step("alice may", as(alice), statusCall, noop, true)

	// A restarted daemon that resumed the session gives it its owner back.
	restarted := &Daemon{log: log, cfg: d.cfg, sess: &session{}}
	restarted.restoreOwnerLocked(restarted.sess)
	d = restarted
	step("after a restart, bob may not look", as(bob), statusCall, noop, false)
	step("after a restart, alice may", as(alice), statusCall, noop, true)
}

func TestListenSocketMissingGroup(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "daemon.sock")
	var logs strings.Builder
	ln, err := listenSocket(sock, "no-such-group-tether-test", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if !strings.Contains(logs.String(), "only root can use the control socket") {
		t.Errorf("no warning about the missing group: %s", logs.String())
	}
}

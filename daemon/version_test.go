package daemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/platform"
	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// newerManager is the build of a manager that needs a newer daemon.
var newerManager = &pbm.BuildInfo{Version: "v9", Protocol: wire.Protocol + 1, MinProtocol: wire.Protocol + 1}

// TestConnectRefusesIncompatibleManager: a manager this daemon cannot
// work with fails connect with one line saying which side to upgrade,
// before any router exists, and the session it opened is departed.
func TestConnectRefusesIncompatibleManager(t *testing.T) {
	m := newFakeManager(t, "198.18.2.0/24")
	m.setBuild(newerManager)
	routers := 0
	d, err := New(Config{Socket: filepath.Join(t.TempDir(), "daemon.sock"), Log: slog.New(slog.DiscardHandler),
		NewRouter: func(string, *slog.Logger) (platform.Router, error) { routers++; return &platform.FakeRouter{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.ln.Close()
	_, err = d.Connect(context.Background(), &pb.ConnectRequest{Manager: m.addr})
	want := "the tether daemon speaks protocol 1, but the traffic manager needs at least protocol 2: upgrade tether on this laptop"
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("connect: %v, want one line saying %q", err, want)
	}
	if routers != 0 || d.current() != nil {
		t.Fatalf("a refused connect made %d routers, session %v", routers, d.current())
	}
	if n := m.departs.Load(); n != 1 {
		t.Fatalf("%d departs, want 1: the manager's new session would wait for its TTL", n)
	}
}

// TestRearriveNamesIncompatibleManager: a manager replaced by one this
// daemon cannot work with is named in the notices; routes stay.
func TestRearriveNamesIncompatibleManager(t *testing.T) {
	m := newFakeManager(t, "198.18.2.0/24")
	s, r := routedSession(t, m, "198.18.2.0/24")
	m.setBuild(newerManager)
	m.advertise("198.18.2.0/24", "198.18.3.0/24")
	s.rearrive(context.Background())
	if got := r.Routes(); !equalPrefixes(got, prefixesOf(t, []string{"198.18.2.0/24"})) {
		t.Errorf("routes %v changed after an incompatible manager answered", got)
	}
	if _, notices := s.interceptStatus(); len(notices) != 1 || !strings.Contains(notices[0], "upgrade tether on this laptop") {
		t.Errorf("notices %q, want one naming the side to upgrade", notices)
	}
}

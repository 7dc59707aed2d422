package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	pbm "github.com/tether-dev/tether/rpc/manager"
)

// TestInterceptPortsCache: the intercepts' targets live in the session
// cache for as long as the session does, root-only like the rest of it.
func TestInterceptPortsCache(t *testing.T) {
	d := &Daemon{log: slog.New(slog.DiscardHandler), cfg: Config{Socket: filepath.Join(t.TempDir(), "daemon.sock")}}
	replace := target{port: 8080, local: 7000, replace: true, portMap: map[uint32]uint32{9090: 7001}, covered: []uint32{5432, 8080, 9090}}
	s := &session{log: d.log, saveTargets: d.saveTargets}
	s.creds.Store(&creds{id: "s1", secret: "x"})
	s.icepts.targets = map[string]target{}

	d.saveCreds(cachedCreds{Manager: "m:1", ID: "s1", Secret: "x"})
	s.icepts.targets["ic1"] = replace
	s.icepts.targets["ic2"] = target{port: 80, local: 3000, covered: []uint32{80}}
	s.targetsChanged()
	want := map[string]target{"ic1": replace, "ic2": {port: 80, local: 3000, covered: []uint32{80}}}
	cached := func() map[string]target {
		c, ok := d.loadCreds()
		if !ok {
			t.Fatal("no session cache")
		}
		return fromCached(c.Intercepts)
	}
	if got := cached(); !reflect.DeepEqual(got, want) {
		t.Fatalf("cached targets %v, want %v", got, want)
	}
	if fi, err := os.Stat(d.credsPath()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v, %v; want mode 0600", fi.Mode(), err)
	}

	d.saveCreds(cachedCreds{Manager: "m:1", ID: "s1", Secret: "x"}) // re-arrived, resumed
	if got := cached(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after a resumed arrival: %v, want %v", got, want)
	}
	d.saveTargets("s0", nil) // a session that is not the cache's
	if got := cached(); !reflect.DeepEqual(got, want) {
		t.Fatalf("another session's targets changed the cache: %v", got)
	}

	// A restarted daemon's session: the manager's first list drops what
	// it no longer has.
	r := &session{log: d.log}
	r.icepts.targets = map[string]target{}
	r.restoreTargets(cached(), true)
	r.handleEvent(context.Background(), &pbm.SessionEvent{InterceptsChanged: true, Intercepts: []*pbm.InterceptInfo{{Id: "ic1"}}})
	if got := r.icepts.targets; !reflect.DeepEqual(got, map[string]target{"ic1": replace}) {
		t.Fatalf("targets after the manager's first list: %v", got)
	}
	fresh := &session{log: d.log}
	fresh.icepts.targets = map[string]target{}
	fresh.restoreTargets(cached(), false)
	if len(fresh.icepts.targets) != 0 || len(fresh.icepts.infos) != 0 {
		t.Fatalf("a new session got the old session's targets: %v", fresh.icepts.targets)
	}

	d.saveCreds(cachedCreds{Manager: "m:1", ID: "s2", Secret: "y"}) // a new session
	if got := cached(); len(got) != 0 {
		t.Fatalf("a new session kept the old session's targets: %v", got)
	}
}

package platform

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// fakeOps is an in-memory routing table for testing router's bookkeeping on
// every OS.
type fakeOps struct {
	routes  map[netip.Prefix]bool
	ups     int
	closed  int
	failAdd map[netip.Prefix]error
	failDel map[netip.Prefix]error
}

func newFakeOps() *fakeOps {
	return &fakeOps{
		routes:  map[netip.Prefix]bool{},
		failAdd: map[netip.Prefix]error{},
		failDel: map[netip.Prefix]error{},
	}
}

func (o *fakeOps) up() error { o.ups++; return nil }

func (o *fakeOps) add(p netip.Prefix) error {
	if err := o.failAdd[p]; err != nil {
		return err
	}
	o.routes[p] = true
	return nil
}

func (o *fakeOps) del(p netip.Prefix) error {
	if err := o.failDel[p]; err != nil {
		return err
	}
	delete(o.routes, p)
	return nil
}

func (o *fakeOps) close() error { o.closed++; return nil }

func (o *fakeOps) table() []string {
	var out []string
	for p := range o.routes {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestRouterSet(t *testing.T) {
	ops := newFakeOps()
	r := newRouter(ops, "tether0", nil)
	// A route somebody else added through the same device is not ours to
	// remove.
	ops.routes[netip.MustParsePrefix("198.19.255.0/24")] = true

	steps := []struct {
		name    string
		subnets []string
		want    []string
	}{
		{"add", []string{"198.18.0.0/16", "198.19.0.0/24", "2001:db8::/64"}, []string{"198.18.0.0/16", "198.19.0.0/24", "198.19.255.0/24", "2001:db8::/64"}},
		{"same again", []string{"2001:db8::/64", "198.19.0.0/24", "198.18.0.0/16"}, []string{"198.18.0.0/16", "198.19.0.0/24", "198.19.255.0/24", "2001:db8::/64"}},
		{"fewer", []string{"198.18.0.0/16"}, []string{"198.18.0.0/16", "198.19.255.0/24"}},
		{"host bits and duplicates", []string{"198.18.7.7/16", "198.18.0.0/16", "198.19.1.1/24"}, []string{"198.18.0.0/16", "198.19.1.0/24", "198.19.255.0/24"}},
		{"none", nil, []string{"198.19.255.0/24"}},
	}
	for _, s := range steps {
		if err := r.Set(prefixes(s.subnets...)); err != nil {
			t.Fatalf("%s: Set: %v", s.name, err)
		}
		if got := ops.table(); !slices.Equal(got, s.want) {
			t.Fatalf("%s: routes %v, want %v", s.name, got, s.want)
		}
	}
	if ops.ups != len(steps) {
		t.Errorf("device brought up %d times, want once per Set (%d)", ops.ups, len(steps))
	}
}

func TestRouterRefusesDefaultRoute(t *testing.T) {
	for _, def := range []string{"0.0.0.0/0", "::/0", "198.18.0.1/0"} {
		t.Run(def, func(t *testing.T) {
			ops := newFakeOps()
			r := newRouter(ops, "tether0", nil)
			err := r.Set(prefixes("198.18.0.0/16", def))
			if err == nil || !strings.Contains(err.Error(), "refusing default route") {
				t.Fatalf("Set: %v, want refusing default route", err)
			}
			if len(ops.routes) != 0 || ops.ups != 0 {
				t.Fatalf("refused Set still changed the system: routes %v, ups %d", ops.table(), ops.ups)
			}
		})
	}
	if err := newRouter(newFakeOps(), "tether0", nil).Set([]netip.Prefix{{}}); err == nil {
		t.Fatal("Set with an invalid prefix succeeded")
	}
}

func TestRouterClose(t *testing.T) {
	ops := newFakeOps()
	r := newRouter(ops, "tether0", nil)
	if err := r.Set(prefixes("198.18.0.0/16", "198.19.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if len(ops.routes) != 0 || ops.closed != 1 {
		t.Fatalf("after Close: routes %v, closed %d", ops.table(), ops.closed)
	}
	if err := r.Close(); err != nil || ops.closed != 1 {
		t.Fatalf("second Close: %v, closed %d; want nil and nothing done", err, ops.closed)
	}
	if err := r.Set(prefixes("198.18.0.0/16")); !errors.Is(err, errRouterClosed) {
		t.Fatalf("Set after Close: %v, want %v", err, errRouterClosed)
	}
}

func TestRouterPartialFailure(t *testing.T) {
	ops := newFakeOps()
	r := newRouter(ops, "tether0", nil)
	bad := netip.MustParsePrefix("198.18.1.0/24")
	ops.failAdd[bad] = errors.New("add failed")
	err := r.Set(prefixes("198.18.0.0/24", "198.18.1.0/24", "198.18.2.0/24"))
	if err == nil || !strings.Contains(err.Error(), "add failed") {
		t.Fatalf("Set: %v, want the add error", err)
	}
	if got, want := ops.table(), []string{"198.18.0.0/24", "198.18.2.0/24"}; !slices.Equal(got, want) {
		t.Fatalf("routes %v, want the others still added %v", got, want)
	}

	// A route that fails to go away is retried by Close.
	stuck := netip.MustParsePrefix("198.18.0.0/24")
	ops.failDel[stuck] = errors.New("del failed")
	if err := r.Set(prefixes("198.18.2.0/24")); err == nil {
		t.Fatal("Set: no error, want the delete error")
	}
	delete(ops.failDel, stuck)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if len(ops.routes) != 0 {
		t.Fatalf("after Close: routes %v", ops.table())
	}
}

func TestFakeRouter(t *testing.T) {
	var f FakeRouter
	if err := f.Set(prefixes("0.0.0.0/0")); err == nil {
		t.Fatal("fake accepted a default route")
	}
	if err := f.Set(prefixes("198.18.0.0/16")); err != nil {
		t.Fatal(err)
	}
	f.FailSet(errors.New("boom"))
	if err := f.Set(prefixes("198.19.0.0/16")); err == nil {
		t.Fatal("FailSet had no effect")
	}
	if got := f.Sets(); len(got) != 2 || got[1][0] != netip.MustParsePrefix("198.19.0.0/16") {
		t.Fatalf("Sets = %v", got)
	}
	f.Close()
	f.Close()
	if f.Closes() != 2 || f.Routes() != nil {
		t.Fatalf("Closes = %d, Routes = %v", f.Closes(), f.Routes())
	}
	if err := f.Set(prefixes("198.18.0.0/16")); !errors.Is(err, errRouterClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
}

// ownerOps are fakeOps that also see other devices' routes, as Linux's do.
type ownerOps struct {
	*fakeOps
	others map[netip.Prefix]string // prefix -> "dev X"
}

func (o ownerOps) otherRoute(p netip.Prefix) (string, error) { return o.others[p], nil }

// TestRouterRefusesOtherDevicesRoutes: a Set that would add a route
// another device has is refused whole, before any change, naming each
// such route; routes it added before are kept, and may stay.
func TestRouterRefusesOtherDevicesRoutes(t *testing.T) {
	ops := ownerOps{newFakeOps(), map[netip.Prefix]string{
		netip.MustParsePrefix("198.18.2.0/24"): "dev wg0",
		netip.MustParsePrefix("198.18.3.0/24"): "(type blackhole, no device)",
	}}
	r := newRouter(ops, "tether0", nil)
	if err := r.Set(prefixes("198.18.1.0/24")); err != nil {
		t.Fatal(err)
	}
	err := r.Set(prefixes("198.18.1.0/24", "198.18.2.0/24", "198.18.3.0/24", "198.18.4.0/24"))
	for _, want := range []string{"route 198.18.2.0/24 dev wg0", "route 198.18.3.0/24 (type blackhole, no device)", "already exists", "remove it or disconnect"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Set: %v, want %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("the refusal is not one line: %q", err)
	}
	if got, want := ops.table(), []string{"198.18.1.0/24"}; !slices.Equal(got, want) {
		t.Fatalf("a refused Set changed the routes to %v, want %v", got, want)
	}
	// A route of its own that another device got meanwhile is not re-added,
	// so it is no reason to refuse.
	ops.others[netip.MustParsePrefix("198.18.1.0/24")] = "dev wg0"
	if err := r.Set(prefixes("198.18.1.0/24", "198.18.4.0/24")); err != nil {
		t.Fatalf("Set: %v", err)
	}
}

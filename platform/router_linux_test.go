package platform

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireRoot skips tests that change network configuration when not root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace with links and routes")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) from iproute2 to create a network namespace")
	}
}

// testNetns creates a network namespace of its own and returns a netlink
// handle inside it and its name. Everything the tests change goes through this handle,
// so the host's own namespace is never touched; the namespace and all in it
// are deleted when the test ends.
func testNetns(t *testing.T) (h *netlink.Handle, ns string) {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 4)
	rand.Read(b)
	name := "tether-plat-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	nsh, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	t.Cleanup(func() { nsh.Close() })
	h, err = netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)

	// Guard: a fresh namespace has only lo. Anything else means the handle
	// points at the host, and the test must not go on.
	links, err := h.LinkList()
	if err != nil {
		t.Fatalf("list links in %s: %v", name, err)
	}
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			t.Fatalf("namespace %s has link %s: handle is not in a fresh namespace", name, l.Attrs().Name)
		}
	}
	return h, name
}

// addTun creates a persistent TUN device in the test's namespace, the kind
// of device Router is for. It goes through ip(8) -n rather than the handle
// because a TUN is created in the namespace of the thread that opens
// /dev/net/tun, which for the handle would be the host's.
func addTun(t *testing.T, h *netlink.Handle, ns, name string) netlink.Link {
	t.Helper()
	if out, err := exec.Command("ip", "-n", ns, "tuntap", "add", "dev", name, "mode", "tun").CombinedOutput(); err != nil {
		t.Fatalf("add TUN device %s: %v: %s", name, err, out)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find TUN device %s in the test namespace: %v", name, err)
	}
	return l
}

// routesVia returns the IPv4 routes through link, failing the test on any
// route that is not of the kind Router adds.
func routesVia(t *testing.T, h *netlink.Handle, link netlink.Link) []string {
	t.Helper()
	rs, err := h.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	var out []string
	for _, r := range rs {
		if r.Scope != netlink.SCOPE_LINK || r.Gw != nil {
			t.Errorf("route %s: scope %s gateway %v, want link scope and no gateway", r.Dst, r.Scope, r.Gw)
		}
		out = append(out, r.Dst.String())
	}
	slices.Sort(out)
	return out
}

func TestRouterLinux(t *testing.T) {
	h, ns := testNetns(t)
	const dev = "tethertest0"

	r := newRouterAt(h, dev, nil)
	if err := r.Set(prefixes("198.18.0.0/24")); err == nil || !strings.Contains(err.Error(), dev) {
		t.Fatalf("Set before the device exists: %v, want an error naming %s", err, dev)
	}

	link := addTun(t, h, ns, dev)
	steps := []struct {
		name    string
		subnets []string
		want    []string
	}{
		{"add", []string{"198.18.0.0/24", "198.18.16.0/20", "198.19.0.0/16"}, []string{"198.18.0.0/24", "198.18.16.0/20", "198.19.0.0/16"}},
		{"fewer", []string{"198.19.0.0/16"}, []string{"198.19.0.0/16"}},
		{"grow", []string{"198.18.0.0/15"}, []string{"198.18.0.0/15"}},
		{"more", []string{"198.18.0.0/15", "198.19.128.0/24"}, []string{"198.18.0.0/15", "198.19.128.0/24"}},
	}
	for _, s := range steps {
		if err := r.Set(prefixes(s.subnets...)); err != nil {
			t.Fatalf("%s: Set: %v", s.name, err)
		}
		if got := routesVia(t, h, link); !slices.Equal(got, s.want) {
			t.Fatalf("%s: routes %v, want %v", s.name, got, s.want)
		}
	}
	if l, err := h.LinkByName(dev); err != nil || l.Attrs().Flags&unix.IFF_UP == 0 {
		t.Fatalf("device %s not up after Set: %v", dev, err)
	}

	if err := r.Set(prefixes("198.18.0.0/16", "0.0.0.0/0")); err == nil || !strings.Contains(err.Error(), "default route") {
		t.Fatalf("Set with a default route: %v, want refusal", err)
	}
	if got, want := routesVia(t, h, link), []string{"198.18.0.0/15", "198.19.128.0/24"}; !slices.Equal(got, want) {
		t.Fatalf("refused Set changed routes to %v, want %v", got, want)
	}
	if rs, err := h.RouteList(nil, netlink.FAMILY_V4); err != nil {
		t.Fatal(err)
	} else {
		for _, rt := range rs {
			if rt.Dst == nil || rt.Dst.String() == "0.0.0.0/0" {
				t.Fatalf("default route present: %+v", rt)
			}
		}
	}

	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := routesVia(t, h, link); len(got) != 0 {
		t.Fatalf("routes left after Close: %v", got)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestRouterLinuxDeviceGoneFirst closes the device before the router, as
// the daemon does when the TUN is torn down first: Close must not fail on the
// routes that went with it.
func TestRouterLinuxDeviceGoneFirst(t *testing.T) {
	h, ns := testNetns(t)
	const dev = "tethertest1"
	link := addTun(t, h, ns, dev)
	r := newRouterAt(h, dev, nil)
	if err := r.Set(prefixes("198.18.0.0/16", "198.19.0.0/16")); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := h.LinkDel(link); err != nil {
		t.Fatalf("delete device: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close after the device is gone: %v", err)
	}
}

func TestRemoveStaleLinux(t *testing.T) {
	h, ns := testNetns(t)
	const dev = "tetherstale0"

	if removed, err := removeStaleAt(h, dev); removed || err != nil {
		t.Fatalf("removeStale of a missing device = %v, %v; want false, nil", removed, err)
	}

	link := addTun(t, h, ns, dev)
	r := newRouterAt(h, dev, nil)
	if err := r.Set(prefixes("198.18.42.0/24")); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if removed, err := removeStaleAt(h, dev); !removed || err != nil {
		t.Fatalf("removeStale = %v, %v; want true, nil", removed, err)
	}
	var notFound netlink.LinkNotFoundError
	if _, err := h.LinkByName(dev); !errors.As(err, &notFound) {
		t.Fatalf("device still there after removeStale: %v", err)
	}
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: link.Attrs().Index}, netlink.RT_FILTER_OIF)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 0 {
		t.Fatalf("routes left through the removed device: %v", rs)
	}
	if removed, err := removeStaleAt(h, dev); removed || err != nil {
		t.Fatalf("second removeStale = %v, %v; want false, nil", removed, err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close after the device was removed: %v", err)
	}
}

// TestRouterLinuxKeepsOtherDevicesRoutes: a route another interface has
// (another VPN's) is never replaced, nor deleted at Close; the refusal
// names the route and the device and changes nothing.
func TestRouterLinuxKeepsOtherDevicesRoutes(t *testing.T) {
	h, ns := testNetns(t)
	const dev = "tethertest2"
	link := addTun(t, h, ns, dev)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	other := addTun(t, h, ns, "othervpn0")
	ip("link", "set", "othervpn0", "up")
	ip("route", "add", "198.18.2.0/24", "dev", "othervpn0")
	ip("route", "add", "198.18.4.0/24", "dev", "othervpn0", "metric", "50")
	ip("route", "add", "blackhole", "198.18.5.0/24")
	ip("-6", "route", "add", "2001:db8:1::/64", "dev", "othervpn0")
	othersBefore := routesVia(t, h, other)

	r := newRouterAt(h, dev, nil)
	for _, tc := range []struct {
		name, subnet, want string
	}{
		{"same metric", "198.18.2.0/24", "route 198.18.2.0/24 dev othervpn0 already exists"},
		{"other metric", "198.18.4.0/24", "route 198.18.4.0/24 dev othervpn0 already exists"},
		{"blackhole", "198.18.5.0/24", "route 198.18.5.0/24 (type blackhole, no device) already exists"},
		{"IPv6", "2001:db8:1::/64", "route 2001:db8:1::/64 dev othervpn0 already exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Set(prefixes("198.18.3.0/24", tc.subnet))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Set: %v, want %q", err, tc.want)
			}
			if got := routesVia(t, h, link); len(got) != 0 {
				t.Fatalf("a refused Set added routes %v", got)
			}
		})
	}
	// A Set that passes keeps its routes, and a later one that is refused
	// leaves them as they were.
	if err := r.Set(prefixes("198.18.3.0/24")); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if err := r.Set(prefixes("198.18.2.0/24", "198.18.6.0/24")); err == nil {
		t.Fatal("Set of another device's route succeeded")
	}
	if got, want := routesVia(t, h, link), []string{"198.18.3.0/24"}; !slices.Equal(got, want) {
		t.Fatalf("after a refused Set: routes %v, want %v", got, want)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := routesVia(t, h, other); !slices.Equal(got, othersBefore) {
		t.Fatalf("the other device's routes are %v after Close, want %v", got, othersBefore)
	}
}

package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NewRouter returns a Router for device dev. The device need not exist yet:
// it is looked up on every Set.
func NewRouter(dev string, log *slog.Logger) (Router, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("new router: open netlink: %w", err)
	}
	r := newRouterAt(h, dev, log)
	r.ops.(*netlinkOps).ownHandle = true
	return r, nil
}

// newRouterAt is NewRouter on a netlink handle the caller owns, so tests can
// route inside a network namespace of their own and leave the host's alone.
func newRouterAt(h *netlink.Handle, dev string, log *slog.Logger) *router {
	return newRouter(&netlinkOps{h: h, dev: dev}, dev, log)
}

// netlinkOps are the routeOps of Linux. router's mutex serialises all calls.
type netlinkOps struct {
	h         *netlink.Handle
	dev       string
	ownHandle bool // close h on close
	// index is the device's interface index as of the last up; a device
	// recreated under the same name gets a new one.
	index int
}

func (o *netlinkOps) up() error {
	link, err := o.h.LinkByName(o.dev)
	if err != nil {
		return fmt.Errorf("set routes: find device %s: %w", o.dev, err)
	}
	if err := o.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set routes: bring device %s up: %w", o.dev, err)
	}
	o.index = link.Attrs().Index
	return nil
}

func (o *netlinkOps) route(p netip.Prefix) *netlink.Route {
	return &netlink.Route{
		LinkIndex: o.index,
		Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		// Link scope: the destinations are reached straight through the
		// device, with no gateway, as on a point-to-point link.
		Scope: netlink.SCOPE_LINK,
	}
}

func (o *netlinkOps) add(p netip.Prefix) error {
	// Add, never replace: router checked that no other device has the
	// route, and a replace would silently take one that appeared since.
	err := o.h.RouteAdd(o.route(p))
	if errors.Is(err, unix.EEXIST) {
		// Ours already (the device kept it), or somebody else's now.
		other, oerr := o.otherRoute(p)
		switch {
		case oerr != nil:
			err = oerr
		case other == "":
			return nil
		default:
			return fmt.Errorf("add route %s dev %s: route %s %s appeared meanwhile; tether does not replace another interface's route", p, o.dev, p, other)
		}
	}
	if err != nil {
		return fmt.Errorf("add route %s dev %s: %w", p, o.dev, err)
	}
	return nil
}

// otherRoute implements routeOwners: a route for exactly p in the main
// table (where add puts its routes) through anything but the device, at
// any metric: one with a lower metric would win over ours, one with a
// higher metric would lose to it, and both change where traffic goes.
func (o *netlinkOps) otherRoute(p netip.Prefix) (string, error) {
	family := netlink.FAMILY_V4
	if !p.Addr().Is4() {
		family = netlink.FAMILY_V6
	}
	filter := &netlink.Route{Dst: o.route(p).Dst, Table: unix.RT_TABLE_MAIN}
	rs, err := o.h.RouteListFiltered(family, filter, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return "", fmt.Errorf("set routes: list routes to %s: %w", p, err)
	}
	for _, rt := range rs {
		if rt.LinkIndex == o.index && len(rt.MultiPath) == 0 {
			continue
		}
		if len(rt.MultiPath) > 0 {
			return "(multipath)", nil
		}
		if rt.LinkIndex == 0 {
			return fmt.Sprintf("(type %s, no device)", routeType(rt.Type)), nil
		}
		name := fmt.Sprintf("index %d", rt.LinkIndex)
		if l, err := o.h.LinkByIndex(rt.LinkIndex); err == nil {
			name = l.Attrs().Name
		}
		return "dev " + name, nil
	}
	return "", nil
}

func routeType(t int) string {
	switch t {
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	}
	return fmt.Sprint(t)
}

func (o *netlinkOps) del(p netip.Prefix) error {
	err := o.h.RouteDel(o.route(p))
	// ESRCH/ENOENT: the route is gone, most likely because the device was
	// closed before the router and took its routes with it. ENODEV: the
	// same, seen through the device lookup.
	if err == nil || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	return fmt.Errorf("delete route %s dev %s: %w", p, o.dev, err)
}

func (o *netlinkOps) close() error {
	if o.ownHandle {
		o.h.Close()
	}
	return nil
}

// RemoveStale deletes a network device named dev if it exists (left behind by a daemon that was killed) together with routes through it. Returns (true, nil) when it removed something.
//
// dev must be a name only Tether uses: whatever device has that name is
// deleted.
func RemoveStale(dev string) (bool, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return false, fmt.Errorf("remove stale device %s: open netlink: %w", dev, err)
	}
	defer h.Close()
	return removeStaleAt(h, dev)
}

func removeStaleAt(h *netlink.Handle, dev string) (bool, error) {
	link, err := h.LinkByName(dev)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return false, nil
		}
		return false, fmt.Errorf("remove stale device %s: find: %w", dev, err)
	}
	// The kernel deletes every route through the device along with it.
	if err := h.LinkDel(link); err != nil {
		return false, fmt.Errorf("remove stale device %s: delete: %w", dev, err)
	}
	return true, nil
}

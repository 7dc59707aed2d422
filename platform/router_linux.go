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
	// Replace rather than add, so a route left by an earlier run (or one
	// already present) does not fail the call.
	if err := o.h.RouteReplace(o.route(p)); err != nil {
		return fmt.Errorf("add route %s dev %s: %w", p, o.dev, err)
	}
	return nil
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

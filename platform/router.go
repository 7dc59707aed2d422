package platform

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Router makes the OS route a set of subnets into one TUN device.
type Router interface {
	// Set brings the device up and makes the routes through it exactly subnets (adds missing, removes extra routes it added earlier).
	Set(subnets []netip.Prefix) error
	// Close removes every route it added. Idempotent.
	Close() error
}

// errRouterClosed is returned by Set after Close; the fake returns it too so
// that callers are tested against the same contract.
var errRouterClosed = errors.New("set routes: router is closed")

// routeOps is what one OS does to its routing table. router keeps the
// bookkeeping around it, so that the rules (no default route, remove only
// what was added, idempotent Close) are written and tested once for every OS.
type routeOps interface {
	// up brings the device up; called at the start of every Set because the
	// device may have been recreated or taken down since the last one.
	up() error
	// add makes the OS route p into the device. Adding a route that is
	// already there must not fail.
	add(p netip.Prefix) error
	// del removes a route that add made. A route or device that is already
	// gone is not an error: the device may have been closed first.
	del(p netip.Prefix) error
	// close releases what the ops hold open (such as a netlink socket).
	close() error
}

// routeOwners is what an OS's routeOps that can see other devices' routes
// also implement (Linux): the route that exists already for exactly p
// through something other than the device, described for an error ("dev
// wg0"), or "" when there is none. Router never replaces such a route:
// that would take another VPN's subnet from it, and Close would then
// delete it.
type routeOwners interface {
	otherRoute(p netip.Prefix) (string, error)
}

// router implements Router on top of one OS's routeOps.
type router struct {
	log *slog.Logger
	ops routeOps

	mu sync.Mutex // guards added and closed, and serialises calls into ops
	// added is every route that add succeeded for and that has not been
	// deleted since; exactly what Close must remove.
	added  map[netip.Prefix]struct{}
	closed bool
}

func newRouter(ops routeOps, dev string, log *slog.Logger) *router {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &router{
		log:   log.With("component", "router", "dev", dev),
		ops:   ops,
		added: make(map[netip.Prefix]struct{}),
	}
}

// Set implements Router. When some routes fail it still applies the others,
// and returns every failure joined: a partly routed cluster is more useful
// than none, and Close still removes whatever was added.
func (r *router) Set(subnets []netip.Prefix) error {
	want, err := canonicalSubnets(subnets)
	if err != nil {
		return err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errRouterClosed
	}
	if err := r.ops.up(); err != nil {
		return err
	}

	if err := r.checkOthersLocked(want); err != nil {
		return err
	}

	var errs []error
	var added, removed []netip.Prefix
	// Add before removing so that a subnet that grows (10.0.0.0/16 becoming
	// 10.0.0.0/8) never loses its route in between.
	for _, p := range want {
		if _, ok := r.added[p]; ok {
			continue
		}
		if err := r.ops.add(p); err != nil {
			errs = append(errs, err)
			continue
		}
		r.added[p] = struct{}{}
		added = append(added, p)
	}
	for _, p := range sortedPrefixes(r.added) {
		if _, ok := slices.BinarySearchFunc(want, p, comparePrefix); ok {
			continue
		}
		if err := r.ops.del(p); err != nil {
			// Kept in added so that Close tries again.
			errs = append(errs, err)
			continue
		}
		delete(r.added, p)
		removed = append(removed, p)
	}
	if len(added) > 0 || len(removed) > 0 {
		r.log.Info("routes changed", "added", added, "removed", removed, "routes", len(r.added))
	}
	return errors.Join(errs...)
}

// checkOthersLocked refuses the whole Set, before it changes anything,
// when a route it would add exists already through another device.
func (r *router) checkOthersLocked(want []netip.Prefix) error {
	owners, ok := r.ops.(routeOwners)
	if !ok {
		return nil
	}
	taken := &RouteExistsError{Owners: map[netip.Prefix]string{}}
	for _, p := range want {
		if _, ok := r.added[p]; ok {
			continue
		}
		other, err := owners.otherRoute(p)
		if err != nil {
			return err
		}
		if other != "" {
			taken.Prefixes = append(taken.Prefixes, p)
			taken.Owners[p] = other
		}
	}
	if len(taken.Prefixes) > 0 {
		return taken
	}
	return nil
}

// RouteExistsError is a Set refused before it changed anything because
// routes for Prefixes exist already through other devices (Owners: "dev
// wg0"), so that a caller can leave them out and route the rest.
type RouteExistsError struct {
	Prefixes []netip.Prefix
	Owners   map[netip.Prefix]string
}

func (e *RouteExistsError) Error() string {
	taken := make([]string, len(e.Prefixes))
	for i, p := range e.Prefixes {
		taken[i] = fmt.Sprintf("%s %s", p, e.Owners[p])
	}
	return fmt.Sprintf("set routes: route %s already exists; tether does not replace another interface's route: remove it or disconnect what added it (another VPN?), then connect again", strings.Join(taken, ", route "))
}

// Close implements Router.
func (r *router) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true

	var errs []error
	for _, p := range sortedPrefixes(r.added) {
		if err := r.ops.del(p); err != nil {
			errs = append(errs, err)
		}
	}
	n := len(r.added)
	clear(r.added)
	errs = append(errs, r.ops.close())
	r.log.Info("router closed", "removed", n)
	return errors.Join(errs...)
}

// canonicalSubnets validates subnets and returns them masked, sorted and
// without duplicates. It refuses a default route (Bits()==0): routing all
// traffic into the cluster would cut the host off from everything else,
// including the API server the tunnel runs over.
func canonicalSubnets(subnets []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(subnets))
	for _, p := range subnets {
		if !p.IsValid() {
			return nil, fmt.Errorf("set routes: invalid subnet %q", p)
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("set routes: refusing default route %s: it would send all of the host's traffic into the cluster", p)
		}
		// The kernel refuses a route whose address has host bits set.
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out), nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func sortedPrefixes(m map[netip.Prefix]struct{}) []netip.Prefix {
	return slices.SortedFunc(maps.Keys(m), comparePrefix)
}

package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tether-dev/tether/platform"
)

// The manager's subnets change while a session runs (discovered from the
// cluster, or a manager that came back after a reconnect). The daemon
// routes each change without reconnecting: every advertised subnet passes
// the checks of connect on its own (the floor, not containing the
// manager, no overlap with the host's networks, no other device's route),
// a refused one is logged, shown in status and left out, and the rest is
// routed: new routes added, gone ones removed. A set that adds to a union
// covering a whole address family loses its additions. When nothing
// advertised can be routed the routes stay as they were, which the user
// accepted at connect: a manager cannot strip a session by advertising
// what the daemon refuses, and status says why.

// updateSubnets routes what the manager advertised now.
func (s *session) updateSubnets(advertised []string) {
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	old := s.routes()
	accepted, refused := s.acceptSubnets(advertised, old)
	if len(accepted) > 0 && !equalPrefixes(accepted, old) {
		err := s.router.Set(s.routed(accepted))
		var taken *platform.RouteExistsError
		if errors.As(err, &taken) {
			// Another device's route: leave those out, route the rest.
			for _, p := range taken.Prefixes {
				accepted = slices.DeleteFunc(accepted, func(q netip.Prefix) bool { return q == p })
				refused = append(refused, fmt.Sprintf("%s: a route for it exists through %s; tether does not replace another interface's route", p, taken.Owners[p]))
			}
			err = nil
			if len(accepted) > 0 {
				err = s.router.Set(s.routed(accepted))
			}
		}
		if err != nil {
			s.log.Error("updating routes failed; routes unchanged", "error", err)
			s.notice(fmt.Sprintf("routes unchanged: cannot route what the traffic manager advertised: %v", err))
			// Set applies what it can; put back what was accepted.
			if err := s.router.Set(s.routed(old)); err != nil {
				s.log.Error("restoring routes failed", "error", err)
			}
			return
		}
	}
	s.refused.Store(&refused)
	for _, r := range refused {
		s.log.Warn("refused a subnet the traffic manager advertised", "refused", r)
	}
	if len(accepted) == 0 {
		why := "the traffic manager advertised no subnets"
		if len(refused) > 0 {
			why = strings.Join(refused, "; ")
		}
		s.log.Error("refused every subnet the traffic manager advertised; routes unchanged", "reason", why)
		s.notice("routes unchanged: refused what the traffic manager advertised: " + why)
		return
	}
	if equalPrefixes(accepted, old) {
		return
	}
	var added, removed []netip.Prefix
	for _, p := range accepted {
		if !slices.Contains(old, p) {
			added = append(added, p)
		}
	}
	for _, p := range old {
		if !slices.Contains(accepted, p) {
			removed = append(removed, p)
		}
	}
	s.subnets.Store(&accepted)
	s.log.Info("subnets changed", "subnets", accepted, "added", added, "removed", removed)
}

// acceptSubnets applies the checks of connect to each advertised subnet:
// accepted in the advertised order, refused as why.
func (s *session) acceptSubnets(advertised []string, routed []netip.Prefix) (accepted []netip.Prefix, refused []string) {
	var wide []netip.Prefix // parsed, each within the floor
	for _, a := range advertised {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			refused = append(refused, fmt.Sprintf("the traffic manager advertised a bad subnet %q: %v", a, err))
			continue
		}
		if p = p.Masked(); slices.Contains(wide, p) {
			continue
		}
		if err := checkRoutes([]netip.Prefix{p}, s.floor); err != nil {
			refused = append(refused, err.Error())
			continue
		}
		wide = append(wide, p)
	}
	// The union rule of connect, for the advertised set: what would
	// complete a whole family is not added.
	if err := checkRoutes(wide, s.floor); err != nil {
		refused = append(refused, fmt.Sprintf("%v (the subnets not routed yet are left out)", err))
		wide = slices.DeleteFunc(wide, func(p netip.Prefix) bool { return !slices.Contains(routed, p) })
	}
	dev := ""
	if s.vif != nil {
		dev = s.vif.Name() // its own address is inside the cluster's subnets by design
	}
	for _, p := range wide {
		one := []netip.Prefix{p}
		err := checkManagerOutside(s.addr, one)
		if err == nil && !s.allowConflicts {
			if err = platform.CheckConflicts(one, dev); err != nil {
				err = fmt.Errorf("%w (pass --allow-conflicting-subnets to route them anyway)", err)
			}
		}
		if err != nil {
			refused = append(refused, err.Error())
			continue
		}
		accepted = append(accepted, p)
	}
	return accepted, refused
}

// refusedSubnets are the advertised subnets the last update left out.
func (s *session) refusedSubnets() []string {
	if p := s.refused.Load(); p != nil {
		return *p
	}
	return nil
}

package daemon

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Default floors of routes.minPrefixLength and routes.minPrefixLengthIPv6.
// /8 is the widest private IPv4 range (10.0.0.0/8). /32 is what a regional
// registry hands a whole network operator; every cluster range seen in
// practice is narrower (a ULA site is a /48, pod ranges /56 to /64, service
// ranges /108 to /112).
const (
	DefaultMinPrefixLength     = 8
	DefaultMinPrefixLengthIPv6 = 32
)

// routeFloor is the shortest prefix per family the daemon routes.
type routeFloor struct{ v4, v6 int }

// checkRoutes refuses a set of subnets that would redirect the host's
// traffic rather than add a cluster to it: any prefix shorter than the
// floor of its family, and any set whose union covers the whole IPv4 or
// IPv6 space (the default route in pieces, such as 0.0.0.0/1 +
// 128.0.0.0/1, which a floor alone does not catch: 256 /8s pass it). The
// manager chooses the subnets and a member of the socket group chooses
// the manager, so neither may decide this for root's routing table.
func checkRoutes(subnets []netip.Prefix, floor routeFloor) error {
	var v4, v6 []netip.Prefix
	for _, p := range subnets {
		min, key := floor.v4, "routes.minPrefixLength"
		if !p.Addr().Is4() {
			min, key = floor.v6, "routes.minPrefixLengthIPv6"
		}
		if p.Bits() < min {
			return fmt.Errorf("the traffic manager advertised %s, wider than /%d (%s): refusing to route it; ask the cluster's admin for narrower subnets, or lower %s", p, min, key, key)
		}
		if p.Addr().Is4() {
			v4 = append(v4, p.Masked())
		} else {
			v6 = append(v6, p.Masked())
		}
	}
	for _, set := range [][]netip.Prefix{v4, v6} {
		if len(set) > 0 && coversAll(set) {
			return fmt.Errorf("the traffic manager advertised %s, which together cover every %s address: that is a default route in pieces, refusing to route it", listPrefixes(set), family(set[0]))
		}
	}
	return nil
}

// listPrefixes names a set briefly: a refusal stays one readable line.
func listPrefixes(set []netip.Prefix) string {
	const shown = 4
	if len(set) <= shown {
		return fmt.Sprint(set)
	}
	return fmt.Sprintf("%v and %d more", set[:shown], len(set)-shown)
}

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// coversAll reports whether the union of set, all masked prefixes of one
// family, is that family's whole address space.
func coversAll(set []netip.Prefix) bool {
	set = slices.Clone(set)
	slices.SortFunc(set, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	// next is the lowest address not covered yet; sorted by start, a gap
	// before a prefix can never be filled by a later one.
	next := netip.IPv4Unspecified()
	if !set[0].Addr().Is4() {
		next = netip.IPv6Unspecified()
	}
	for _, p := range set {
		if next.Less(p.Addr()) {
			return false
		}
		last := lastAddr(p)
		if !last.Next().IsValid() {
			return true // reached the family's last address
		}
		if next.Less(last.Next()) {
			next = last.Next()
		}
	}
	return false
}

// lastAddr is the highest address of the masked prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

package platform

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// CheckConflicts returns an error naming the subnet and the interface and
// network when any of subnets overlaps a network directly connected to the
// host: the prefixes of the addresses on the host's interfaces, except those
// of interface exceptDev and of loopback. It uses only package net, so it is
// the same on every OS.
//
// Routing such a subnet into the TUN device would either lose to the host's
// more specific connected route or cut the host off from its own network,
// so the daemon reports it and lets the user decide instead of guessing.
func CheckConflicts(subnets []netip.Prefix, exceptDev string) error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("check subnet conflicts: list interfaces: %w", err)
	}
	list := make([]ifaceAddrs, 0, len(ifaces))
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			return fmt.Errorf("check subnet conflicts: addresses of %s: %w", ifc.Name, err)
		}
		list = append(list, ifaceAddrs{name: ifc.Name, flags: ifc.Flags, addrs: addrs})
	}
	return overlaps(subnets, connectedNetworks(list, exceptDev))
}

// ifaceAddrs is one interface as net reports it, so that the conversion in
// connectedNetworks can be tested without the host's real interfaces.
type ifaceAddrs struct {
	name  string
	flags net.Flags
	addrs []net.Addr
}

// connectedNetworks maps each interface name to the networks of its
// addresses. It leaves out loopback, which never carries cluster traffic, and
// exceptDev: Tether's own device has an address inside the cluster subnets
// by design.
func connectedNetworks(ifaces []ifaceAddrs, exceptDev string) map[string][]netip.Prefix {
	connected := make(map[string][]netip.Prefix)
	for _, ifc := range ifaces {
		if ifc.name == exceptDev || ifc.flags&net.FlagLoopback != 0 {
			continue
		}
		for _, a := range ifc.addrs {
			if p, ok := prefixOf(a); ok {
				connected[ifc.name] = append(connected[ifc.name], p)
			}
		}
	}
	return connected
}

// prefixOf converts an interface address to the network it is on.
func prefixOf(a net.Addr) (netip.Prefix, bool) {
	ipn, ok := a.(*net.IPNet)
	if !ok {
		return netip.Prefix{}, false
	}
	addr, ok := netip.AddrFromSlice(ipn.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := ipn.Mask.Size()
	if bits == 0 { // not a prefix mask
		return netip.Prefix{}, false
	}
	// net may hold an IPv4 address in 16 bytes and its mask in 4, or both
	// in 16: unmap the address and take the mask's length relative to it.
	addr = addr.Unmap()
	if addr.Is4() && bits == 128 {
		ones -= 96
	}
	p, err := addr.Prefix(ones)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p, true
}

// overlaps returns an error for each of subnets that overlaps one of the
// connected networks (interface name → prefixes of its addresses), joined.
// Interfaces are checked in name order so the error reads the same from run
// to run.
func overlaps(subnets []netip.Prefix, connected map[string][]netip.Prefix) error {
	names := make([]string, 0, len(connected))
	for name := range connected {
		names = append(names, name)
	}
	slices.Sort(names)

	var errs []error
	for _, s := range subnets {
		for _, name := range names {
			for _, n := range connected[name] {
				if s.Overlaps(n) {
					errs = append(errs, fmt.Errorf("subnet %s overlaps network %s of interface %s", s, n, name))
				}
			}
		}
	}
	return errors.Join(errs...)
}

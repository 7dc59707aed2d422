package manager

import (
	"cmp"
	"net/netip"
	"slices"
)

// The subnets a manager serves are those configured (subnets) and those
// discovered from the cluster (SetSubnets), as one union: masked, sorted,
// without duplicates, and without a prefix that another one in the set
// covers (a configured 10.244.0.0/16 makes a discovered 10.244.1.0/24
// redundant). Configured subnets are never removed by discovery: they are
// the operator's extra networks.

// SetSubnets replaces the subnets discovered from the cluster. When the
// union with the configured ones changes, every connected daemon learns
// it on its WatchSession stream and routes it without reconnecting, and
// flows are allowed to exactly the new set.
func (s *Server) SetSubnets(discovered []netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.subnets.Load()
	next := unionPrefixes(s.configured, discovered)
	if slices.Equal(old, next) {
		return
	}
	s.subnets.Store(&next)
	close(s.subnetsChanged)
	s.subnetsChanged = make(chan struct{})
	added, removed := diffPrefixes(old, next)
	s.log.Info("subnets changed: telling connected daemons", "subnets", next, "added", added, "removed", removed, "sessions", len(s.sessions))
}

// Subnets are the subnets served now.
func (s *Server) Subnets() []netip.Prefix { return slices.Clone(*s.subnets.Load()) }

// subnetStrings is the served set in CIDR notation, and the channel that
// is closed at its next change.
func (s *Server) subnetStrings() ([]string, <-chan struct{}) {
	s.mu.Lock()
	ch := s.subnetsChanged
	s.mu.Unlock()
	set := *s.subnets.Load()
	out := make([]string, len(set))
	for i, p := range set {
		out[i] = p.String()
	}
	return out, ch
}

// unionPrefixes is the served set of sets (see above).
func unionPrefixes(sets ...[]netip.Prefix) []netip.Prefix {
	var all []netip.Prefix
	for _, set := range sets {
		for _, p := range set {
			if p.IsValid() {
				all = append(all, p.Masked())
			}
		}
	}
	// IPv4 first (Compare orders by length first), wider first within an
	// address: a covering prefix precedes what it
	// covers, so one pass keeps only the outermost.
	slices.SortFunc(all, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	out := []netip.Prefix{}
	for _, p := range all {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// diffPrefixes returns what next has that old lacks, and the reverse.
func diffPrefixes(old, next []netip.Prefix) (added, removed []netip.Prefix) {
	for _, p := range next {
		if !slices.Contains(old, p) {
			added = append(added, p)
		}
	}
	for _, p := range old {
		if !slices.Contains(next, p) {
			removed = append(removed, p)
		}
	}
	return added, removed
}

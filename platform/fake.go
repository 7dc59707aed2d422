package platform

import (
	"net/netip"
	"slices"
	"sync"
)

// FakeRouter is a Router for the tests of other packages: it records every
// Set and Close and touches no OS state. The zero value is ready to use and
// it is safe for concurrent use.
type FakeRouter struct {
	mu      sync.Mutex // guards the fields below
	sets    [][]netip.Prefix
	closes  int
	failSet error
	taken   map[netip.Prefix]string // other devices' routes
}

var _ Router = (*FakeRouter)(nil)

// Set records subnets. Like the real Router it refuses an invalid subnet or a
// default route, and fails after Close.
func (f *FakeRouter) Set(subnets []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closes > 0 {
		return errRouterClosed
	}
	if _, err := canonicalSubnets(subnets); err != nil {
		return err
	}
	// Like the real Router: another device's route refuses the whole Set
	// before anything changes, unless this router routes it already.
	var routed []netip.Prefix
	if len(f.sets) > 0 {
		routed = f.sets[len(f.sets)-1]
	}
	taken := &RouteExistsError{Owners: map[netip.Prefix]string{}}
	for _, p := range subnets {
		if owner, ok := f.taken[p.Masked()]; ok && !slices.Contains(routed, p) {
			taken.Prefixes = append(taken.Prefixes, p.Masked())
			taken.Owners[p.Masked()] = owner
		}
	}
	if len(taken.Prefixes) > 0 {
		return taken
	}
	f.sets = append(f.sets, slices.Clone(subnets))
	return f.failSet
}

// Close records the call. Like the real Router it may be called many times.
func (f *FakeRouter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closes++
	return nil
}

// FailSet makes every later Set return err (after recording its subnets);
// nil makes Set succeed again.
func (f *FakeRouter) FailSet(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failSet = err
}

// Take makes p a route of another device (owner: "dev wg0"), which Set
// refuses to replace.
func (f *FakeRouter) Take(p netip.Prefix, owner string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.taken == nil {
		f.taken = make(map[netip.Prefix]string)
	}
	f.taken[p.Masked()] = owner
}

// Sets returns the subnets of every Set call so far, oldest first.
func (f *FakeRouter) Sets() [][]netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]netip.Prefix, len(f.sets))
	for i, s := range f.sets {
		out[i] = slices.Clone(s)
	}
	return out
}

// Routes returns the subnets of the last Set call that was recorded, or nil
// when there has been none or the router was closed since.
func (f *FakeRouter) Routes() []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sets) == 0 || f.closes > 0 {
		return nil
	}
	return slices.Clone(f.sets[len(f.sets)-1])
}

// Closes returns how many times Close was called.
func (f *FakeRouter) Closes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closes
}

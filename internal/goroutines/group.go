// Package goroutines counts the goroutines a component must wait for when it
// closes.
package goroutines

import "sync"

// Group is a WaitGroup that refuses new goroutines once Close was called,
// so that no Add races with Wait. The zero value is ready to use.
type Group struct {
	mu     sync.Mutex // guards closed
	closed bool
	wg     sync.WaitGroup
}

// Add counts one goroutine, unless the group is closed: false then, and the
// caller must not start it.
func (g *Group) Add() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// Done ends a goroutine that Add counted.
func (g *Group) Done() { g.wg.Done() }

// Go runs f in a counted goroutine unless the group is closed; it reports
// whether f runs.
func (g *Group) Go(f func()) bool {
	if !g.Add() {
		return false
	}
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

// Close refuses new goroutines.
func (g *Group) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Wait waits for the counted goroutines.
func (g *Group) Wait() { g.wg.Wait() }

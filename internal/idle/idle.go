// Package idle ends things that have not been used for a while, at the
// cost of one atomic store per use and one timer wake-up per timeout.
package idle

import (
	"sync/atomic"
	"time"
)

// Timer calls a function once nothing has called Touch for the timeout.
type Timer struct {
	timeout time.Duration
	start   time.Time
	last    atomic.Int64 // monotonic nanoseconds since start of the last Touch
	t       *time.Timer
}

// New starts a Timer that calls expire after timeout without Touch.
func New(timeout time.Duration, expire func()) *Timer {
	it := &Timer{timeout: timeout, start: time.Now()}
	it.t = time.AfterFunc(timeout, func() {
		if left := it.timeout - (time.Since(it.start) - time.Duration(it.last.Load())); left > 0 {
			it.t.Reset(left)
			return
		}
		expire()
	})
	return it
}

// Touch records a use.
func (it *Timer) Touch() { it.last.Store(int64(time.Since(it.start))) }

// Stop stops the timer; expire is not called after Stop returns unless it
// was already running.
func (it *Timer) Stop() { it.t.Stop() }

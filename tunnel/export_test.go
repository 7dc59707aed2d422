package tunnel

import "time"

// MaxIdleStreams is how many idle streams a Client keeps.
func MaxIdleStreams() int { return maxIdleStreams }

// SetMaxIdleStreams sets it, until the returned func restores it.
func SetMaxIdleStreams(n int) (restore func()) {
	old := maxIdleStreams
	maxIdleStreams = n
	return func() { maxIdleStreams = old }
}

// SetIdleStreamTimeout sets how long an idle stream waits, until the
// returned func restores it.
func SetIdleStreamTimeout(d time.Duration) (restore func()) {
	old := idleStreamTimeout
	idleStreamTimeout = d
	return func() { idleStreamTimeout = old }
}

package tunnel

import "time"

// MaxIdleStreams is maxIdleStreams, for tests.
const MaxIdleStreams = maxIdleStreams

// SetIdleStreamTimeout sets how long an idle stream waits, until the
// returned func restores it.
func SetIdleStreamTimeout(d time.Duration) (restore func()) {
	old := idleStreamTimeout
	idleStreamTimeout = d
	return func() { idleStreamTimeout = old }
}

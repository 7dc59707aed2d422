//go:build !linux && !darwin && !windows

package clock

import (
	"crypto/rand"
	"time"
)

var (
	start = time.Now()
	id    = rand.Text()
)

// Boot falls back to Go's monotonic clock since the process started: it may
// stop during suspend, which the manager's gap rule guards against.
func Boot() time.Duration { return time.Since(start) }

// BootID is new in every process, as Boot's zero is: readings of an
// earlier process are never taken for this one's.
func BootID() string { return id }

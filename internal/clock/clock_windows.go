package clock

import (
	"time"

	"golang.org/x/sys/windows"
)

// Boot reads GetTickCount64, milliseconds since boot including sleep and
// hibernation (QueryUnbiasedInterruptTime would exclude them).
func Boot() time.Duration { return windows.DurationSinceBoot() }

// BootID is empty: Windows has no boot id; callers compare the boot's wall
// time instead (see BootedAt).
func BootID() string { return "" }

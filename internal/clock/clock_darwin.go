package clock

import (
	"time"

	"golang.org/x/sys/unix"
)

// Boot reads CLOCK_MONOTONIC, which on macOS (unlike Linux) "will continue
// to increment while the system is asleep" (clock_gettime(3));
// CLOCK_UPTIME_RAW is the one that stops.
func Boot() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("clock: CLOCK_MONOTONIC: " + err.Error())
	}
	return time.Duration(ts.Nano())
}

// BootID is the kernel's UUID of this boot session.
func BootID() string {
	id, err := unix.Sysctl("kern.bootsessionuuid")
	if err != nil {
		return ""
	}
	return id
}

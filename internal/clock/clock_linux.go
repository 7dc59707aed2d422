package clock

import (
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Boot reads CLOCK_BOOTTIME: CLOCK_MONOTONIC plus the time suspended.
func Boot() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		// Only an unknown clock id fails; kernels since 2.6.39 have it.
		panic("clock: CLOCK_BOOTTIME: " + err.Error())
	}
	return time.Duration(ts.Nano())
}

// BootID is the kernel's random id of this boot.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Package clock reads a clock that keeps counting while the machine is
// suspended. Go's monotonic clock stops during suspend on Linux (and in
// the runtime's timers everywhere), so a laptop that slept 12 hours would
// look idle for seconds; idle time must be measured on this clock instead.
//
// Boot returns the time since boot (or some other fixed point of this boot)
// including suspend; readings compare only within one boot, which BootID
// tells apart.
package clock

import "time"

// BootedAt is the wall-clock time of this boot by Boot's reckoning.
func BootedAt() time.Time { return time.Now().Add(-Boot()) }

// SameBoot reports whether a Boot reading taken when BootID was id and
// BootedAt was at belongs to this boot. Without a boot id (Windows) the
// boot's wall time must agree within a minute: a reboot moves it by the
// uptime, a wall-clock step moves it too and then the reading is refused,
// which errs on the safe side.
func SameBoot(id string, at time.Time) bool {
	if cur := BootID(); cur != "" || id != "" {
		return cur == id
	}
	return BootedAt().Sub(at).Abs() < time.Minute
}

//go:build !linux && !darwin && !windows

package platform

import (
	"fmt"
	"log/slog"
	"runtime"
)

// NewRouter fails: Tether knows how to route only on Linux, macOS and
// Windows.
func NewRouter(dev string, log *slog.Logger) (Router, error) {
	return nil, fmt.Errorf("new router: routes are not supported on %s", runtime.GOOS)
}

// RemoveStale deletes a network device named dev if it exists (left behind by a daemon that was killed) together with routes through it. Returns (true, nil) when it removed something.
//
// Here it removes nothing, as no Router can have made anything.
func RemoveStale(dev string) (bool, error) {
	return false, nil
}

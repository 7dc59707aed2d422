package platform

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// launchdTarget names the daemon's job in launchd's system domain.
const launchdTarget = "system/" + LaunchdLabel

// serviceDefaults returns where launchd reads the plist, and the check that
// Install and Uninstall may change launchd's daemons.
func serviceDefaults() (path string, preflight func() error) {
	return LaunchdPlistPath, func() error {
		if os.Geteuid() != 0 {
			return errors.New("needs root: run it with sudo")
		}
		return nil
	}
}

// installSteps unloads an installed daemon, writes the plist and loads it
// (RunAtLoad starts it). enable clears a "disabled" override left by
// `launchctl disable`, which would make bootstrap fail.
func (s *Service) installSteps() ([]serviceStep, error) {
	ok, err := s.installed()
	if err != nil {
		return nil, fmt.Errorf("look for the plist: %w", err)
	}
	var steps []serviceStep
	if ok {
		// Optional: the plist may be there without being loaded.
		steps = append(steps, s.runStep(true, "launchctl", "bootout", launchdTarget))
	}
	return append(steps,
		serviceStep{
			// launchd opens the log file but makes no directory for it.
			desc: "mkdir -p " + filepath.Dir(LaunchdLogPath),
			do:   func() error { return os.MkdirAll(filepath.Dir(LaunchdLogPath), 0o755) },
		},
		s.writeStep(LaunchdPlist(s.cfg)),
		s.runStep(false, "launchctl", "enable", launchdTarget),
		s.runStep(false, "launchctl", "bootstrap", "system", s.path),
	), nil
}

// uninstallSteps unloads the daemon (SIGTERM, as `tether daemon` expects)
// and removes the plist.
func (s *Service) uninstallSteps() ([]serviceStep, error) {
	ok, err := s.installed()
	if err != nil {
		return nil, fmt.Errorf("look for the plist: %w", err)
	}
	if !ok {
		return s.notInstalled(), nil
	}
	return []serviceStep{
		s.runStep(true, "launchctl", "bootout", launchdTarget),
		s.removeStep(),
	}, nil
}

package platform

import (
	"errors"
	"fmt"
	"os"
)

// serviceDefaults returns where systemd reads the unit, and the check that
// Install and Uninstall may change systemd's services here.
func serviceDefaults() (path string, preflight func() error) {
	return SystemdUnitPath, func() error {
		if os.Geteuid() != 0 {
			return errors.New("needs root: run it with sudo")
		}
		// sd_booted(3): this directory exists only when systemd is PID 1.
		if _, err := os.Stat("/run/systemd/system"); err != nil {
			return errors.New("systemd is not running on this machine (no /run/systemd/system): run `tether daemon` from its init system instead")
		}
		return nil
	}
}

// installSteps writes the unit, then enables and (re)starts it: restart
// starts a stopped service and makes a running one pick up a new binary or
// new flags.
func (s *Service) installSteps() ([]serviceStep, error) {
	return []serviceStep{
		s.writeStep(SystemdUnit(s.cfg)),
		s.runStep(false, "systemctl", "daemon-reload"),
		s.runStep(false, "systemctl", "enable", SystemdUnitName),
		s.runStep(false, "systemctl", "restart", SystemdUnitName),
	}, nil
}

// uninstallSteps stops and disables the unit, removes it and makes systemd
// forget it. Stopping is SIGTERM: the daemon removes its routes and TUN
// device, and keeps the session for a daemon started later to resume.
func (s *Service) uninstallSteps() ([]serviceStep, error) {
	ok, err := s.installed()
	if err != nil {
		return nil, fmt.Errorf("look for the unit: %w", err)
	}
	if !ok {
		return s.notInstalled(), nil
	}
	return []serviceStep{
		// Optional: a unit that systemd never loaded cannot be stopped, and
		// the file must go all the same.
		s.runStep(true, "systemctl", "disable", "--now", SystemdUnitName),
		s.removeStep(),
		s.runStep(false, "systemctl", "daemon-reload"),
	}, nil
}

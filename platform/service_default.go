//go:build !linux && !darwin && !windows

package platform

import (
	"fmt"
	"runtime"
)

// serviceDefaults: there is no service manager Tether knows here.
func serviceDefaults() (path string, preflight func() error) { return "", nil }

func (s *Service) installSteps() ([]serviceStep, error) {
	return nil, fmt.Errorf("services are not supported on %s: run `tether daemon` from its init system", runtime.GOOS)
}

func (s *Service) uninstallSteps() ([]serviceStep, error) {
	return nil, fmt.Errorf("services are not supported on %s", runtime.GOOS)
}

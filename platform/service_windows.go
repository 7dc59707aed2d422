package platform

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// serviceDefaults: the service control manager keeps the service's
// definition itself, and refuses anyone but an administrator (the error
// says "Access is denied").
func serviceDefaults() (path string, preflight func() error) { return "", nil }

// windowsFailureReset is how long (seconds) the service must run before the
// service control manager forgets its earlier failures.
const windowsFailureReset = 24 * 60 * 60

// installSteps creates the service (or, when it exists, stops it and points
// it at the new command line), makes the service control manager restart it
// when it fails, and starts it. Each step names its sc.exe equivalent.
func (s *Service) installSteps() ([]serviceStep, error) {
	cmdline := windowsCommandLine(s.cfg)
	delay := fmt.Sprintf("restart/%d", serviceRestartSec*1000)
	return []serviceStep{
		{
			desc: fmt.Sprintf(`sc.exe create %s binPath= "%s" start= auto DisplayName= "Tether daemon"`,
				WindowsServiceName, strings.ReplaceAll(cmdline, `"`, `\"`)),
			do: func() error {
				return withSCM(func(m *mgr.Mgr) error {
					c := mgr.Config{
						StartType:   mgr.StartAutomatic,
						DisplayName: "Tether daemon",
						Description: "Tether root daemon: the cluster network through a TUN device",
					}
					sv, err := m.OpenService(WindowsServiceName)
					if err != nil {
						sv, err = m.CreateService(WindowsServiceName, s.cfg.Binary, c, s.cfg.Args...)
						if err != nil {
							return err
						}
						return sv.Close()
					}
					defer sv.Close()
					// Installed already: a new binary or new flags.
					if err := stopService(sv); err != nil {
						return err
					}
					old, err := sv.Config()
					if err != nil {
						return err
					}
					old.BinaryPathName, old.StartType = cmdline, c.StartType
					old.DisplayName, old.Description = c.DisplayName, c.Description
					return sv.UpdateConfig(old)
				})
			},
		},
		{
			desc: fmt.Sprintf("sc.exe failure %s reset= %d actions= %s/%s/%s", WindowsServiceName, windowsFailureReset, delay, delay, delay),
			do: withService(func(sv *mgr.Service) error {
				r := mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: serviceRestartSec * time.Second}
				return sv.SetRecoveryActions([]mgr.RecoveryAction{r, r, r}, windowsFailureReset)
			}),
		},
		{
			// A daemon that stops with an error (exit code 1) counts as failed,
			// not only one that crashes: Restart=on-failure.
			desc: fmt.Sprintf("sc.exe failureflag %s 1", WindowsServiceName),
			do: withService(func(sv *mgr.Service) error {
				return sv.SetRecoveryActionsOnNonCrashFailures(true)
			}),
		},
		{
			desc: "sc.exe start " + WindowsServiceName,
			do:   withService(func(sv *mgr.Service) error { return sv.Start() }),
		},
	}, nil
}

// uninstallSteps stops and deletes the service. Whether it is installed is
// known only to an administrator, so a dry run lists both steps, and a
// service that is not there is already uninstalled.
func (s *Service) uninstallSteps() ([]serviceStep, error) {
	return []serviceStep{
		{
			desc:     "sc.exe stop " + WindowsServiceName,
			do:       withServiceIfExists(stopService),
			optional: true,
		},
		{
			// Windows deletes the service once no handle to it is left open.
			desc: "sc.exe delete " + WindowsServiceName,
			do:   withServiceIfExists(func(sv *mgr.Service) error { return sv.Delete() }),
		},
	}, nil
}

// windowsCommandLine is the command line CreateService gives the service.
func windowsCommandLine(cfg ServiceConfig) string {
	s := syscall.EscapeArg(cfg.Binary)
	for _, a := range cfg.Args {
		s += " " + syscall.EscapeArg(a)
	}
	return s
}

func withSCM(f func(*mgr.Mgr) error) error {
	m, err := mgr.Connect()
	if err != nil {
		if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
			return fmt.Errorf("connect to the service control manager: %w (run it as an administrator)", err)
		}
		return fmt.Errorf("connect to the service control manager: %w", err)
	}
	defer m.Disconnect()
	return f(m)
}

// withService opens the service and calls f with it.
func withService(f func(*mgr.Service) error) func() error { return openService(f, false) }

// withServiceIfExists is withService, except that a service that does not
// exist is not an error and f is not called.
func withServiceIfExists(f func(*mgr.Service) error) func() error { return openService(f, true) }

func openService(f func(*mgr.Service) error, mayBeMissing bool) func() error {
	return func() error {
		return withSCM(func(m *mgr.Mgr) error {
			sv, err := m.OpenService(WindowsServiceName)
			if mayBeMissing && errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("open service %s: %w", WindowsServiceName, err)
			}
			defer sv.Close()
			return f(sv)
		})
	}
}

// stopService stops sv and waits until it has stopped, for the daemon's
// stop timeout and a little.
func stopService(sv *mgr.Service) error {
	st, err := sv.Query()
	if err != nil {
		return fmt.Errorf("query service: %w", err)
	}
	if st.State == svc.Stopped {
		return nil
	}
	if _, err := sv.Control(svc.Stop); err != nil && !errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return fmt.Errorf("stop service: %w", err)
	}
	deadline := time.Now().Add((serviceStopSec + 5) * time.Second)
	for time.Now().Before(deadline) {
		if st, err = sv.Query(); err != nil {
			return fmt.Errorf("query service: %w", err)
		}
		if st.State == svc.Stopped {
			return nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("stop service: still running after %ds", serviceStopSec+5)
}

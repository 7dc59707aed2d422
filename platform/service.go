package platform

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Where each OS's service manager finds the daemon.
const (
	SystemdUnitPath    = "/etc/systemd/system/tether.service"
	SystemdUnitName    = "tether.service"
	LaunchdPlistPath   = "/Library/LaunchDaemons/dev.tether.daemon.plist"
	LaunchdLabel       = "dev.tether.daemon"
	WindowsServiceName = "tether"
	// LaunchdLogPath takes the daemon's output under launchd, which has no
	// journal; the same file as a daemon that `tether connect` starts.
	LaunchdLogPath = "/var/log/tether/daemon.log"
)

// Restart and stop timing, the same on every OS.
const (
	serviceRestartSec = 2  // wait before restarting a daemon that failed
	serviceStopSec    = 15 // SIGTERM to SIGKILL
	// serviceWatchdogSec is systemd's WatchdogSec: the daemon pings at half
	// of it (Notifier), so a daemon whose runtime stalls is killed and
	// restarted within 30 s.
	serviceWatchdogSec = 30
)

// ServiceConfig is what the installed service runs: Binary, then Args.
type ServiceConfig struct {
	// Binary is the absolute path of the tether executable.
	Binary string
	// Args follow Binary: "daemon" and the flags that matter.
	Args []string
}

// SystemdUnit returns the systemd unit (tether.service) that runs cfg.
//
// The daemon needs CAP_NET_ADMIN (TUN device, routes, links) and
// /dev/net/tun from the host, and writes only below /run/tether, so the
// sandbox keeps it to that. Every line is checked by `systemd-analyze
// verify` in the tests where systemd is installed.
func SystemdUnit(cfg ServiceConfig) string {
	exec := make([]string, 0, 1+len(cfg.Args))
	for _, a := range append([]string{cfg.Binary}, cfg.Args...) {
		exec = append(exec, systemdQuote(a))
	}
	return fmt.Sprintf(`# Written by "tether daemon install"; "tether daemon uninstall" removes it.
[Unit]
Description=Tether root daemon: the cluster network through a TUN device
Documentation=https://github.com/tether-dev/tether
After=network.target

[Service]
# The daemon sends READY=1 once its control socket serves, STOPPING=1 when it
# shuts down and WATCHDOG=1 every WatchdogSec/2.
Type=notify
NotifyAccess=main
ExecStart=%s
Restart=on-failure
RestartSec=%d
WatchdogSec=%ds
KillSignal=SIGTERM
TimeoutStopSec=%d
# /run/tether holds the control socket and the files that let a restarted
# daemon clean up after its predecessor and resume its session: kept when the
# daemon stops, as it would be without systemd.
RuntimeDirectory=tether
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes

# Sandbox. CAP_NET_ADMIN: TUN device, routes, links; CAP_CHOWN: the control
# socket's group (--socket-group); CAP_NET_BIND_SERVICE: --metrics-addr or
# --pprof on a port below 1024.
CapabilityBoundingSet=CAP_NET_ADMIN CAP_CHOWN CAP_NET_BIND_SERVICE
DevicePolicy=closed
DeviceAllow=/dev/net/tun rw
NoNewPrivileges=yes
# /usr, /boot and /etc read-only. No ProtectHome= or PrivateTmp=: --socket
# may be anywhere else, and the CLI must see it there.
ProtectSystem=full
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# AF_NETLINK: routes and links; AF_INET/AF_INET6: the manager, DNS, metrics.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
`, strings.Join(exec, " "), serviceRestartSec, serviceWatchdogSec, serviceStopSec)
}

// systemdQuote makes s one word of a systemd command line: double-quoted
// when it holds anything systemd would split at or expand, with "%"
// (specifiers, as in the default --tun-name tether%d) and "$" (variables)
// doubled.
func systemdQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\"'\\%$;") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '%':
			b.WriteString("%%")
		case '$':
			b.WriteString("$$")
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// LaunchdPlist returns the launchd property list (dev.tether.daemon) that
// runs cfg at boot and restarts it when it fails, as Restart=on-failure does
// under systemd. launchd has no readiness protocol.
func LaunchdPlist(cfg ServiceConfig) string {
	var args strings.Builder
	for _, a := range append([]string{cfg.Binary}, cfg.Args...) {
		fmt.Fprintf(&args, "\t\t<string>%s</string>\n", xmlEscape(a))
	}
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by "tether daemon install"; "tether daemon uninstall" removes it. -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>%s</string>
	<key>ProgramArguments</key>
	<array>
%s	</array>
	<key>RunAtLoad</key>
	<true/>
	<!-- Restart when the daemon exits with an error or a signal, not after a clean stop. -->
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>ThrottleInterval</key>
	<integer>%d</integer>
	<key>ExitTimeOut</key>
	<integer>%d</integer>
	<key>StandardOutPath</key>
	<string>%s</string>
	<key>StandardErrorPath</key>
	<string>%[5]s</string>
</dict>
</plist>
`, LaunchdLabel, args.String(), serviceRestartSec, serviceStopSec, LaunchdLogPath)
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s)) // writes to a strings.Builder never fail
	return b.String()
}

// Service installs the daemon as the OS's service (systemd on Linux,
// launchd on macOS, the service control manager on Windows) and removes
// it. Each step is written to the io.Writer as it is taken; a dry run
// writes what would be done, files' contents included, and touches nothing.
type Service struct {
	cfg ServiceConfig
	out io.Writer

	// The seams of the tests, set by NewService for the real OS.
	path      string                                  // the unit file or plist; unused on Windows
	run       func(name string, args ...string) error // runs a command
	preflight func() error                            // may this process change the services here?
	writeFile func(name string, data []byte, perm os.FileMode) error
}

// NewService returns the Service that installs cfg and removes it, writing
// what it does to out. Uninstall does not need cfg.
func NewService(cfg ServiceConfig, out io.Writer) *Service {
	s := &Service{cfg: cfg, out: out, run: runCommand, writeFile: os.WriteFile}
	s.path, s.preflight = serviceDefaults()
	return s
}

// Install writes the service definition, enables it so that it starts at
// boot, and starts it (restarts it when it was installed already, so that a
// new binary or new flags take effect).
func (s *Service) Install(dryRun bool) error {
	if !filepath.IsAbs(s.cfg.Binary) {
		return fmt.Errorf("install service: binary %q is not an absolute path", s.cfg.Binary)
	}
	steps, err := s.installSteps()
	if err != nil {
		return fmt.Errorf("install service: %w", err)
	}
	return s.apply("install service", steps, dryRun)
}

// Uninstall stops the service, disables it and removes its definition.
// Uninstalling a service that is not installed says so and succeeds.
func (s *Service) Uninstall(dryRun bool) error {
	steps, err := s.uninstallSteps()
	if err != nil {
		return fmt.Errorf("uninstall service: %w", err)
	}
	return s.apply("uninstall service", steps, dryRun)
}

// A serviceStep is one action of Install or Uninstall.
type serviceStep struct {
	desc   string       // what it does, as a command where there is one: "systemctl daemon-reload"
	detail string       // shown by dry runs only: the content of a file
	do     func() error // nil: only a message
	// optional steps may fail without stopping the others: stopping a
	// service that is not running.
	optional bool
}

func (s *Service) apply(op string, steps []serviceStep, dryRun bool) error {
	acts := slices.ContainsFunc(steps, func(st serviceStep) bool { return st.do != nil })
	if acts && !dryRun && s.preflight != nil {
		if err := s.preflight(); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	for _, st := range steps {
		switch {
		case st.do == nil:
			fmt.Fprintln(s.out, st.desc)
			continue
		case dryRun:
			fmt.Fprintln(s.out, "would:", st.desc)
			if st.detail != "" {
				fmt.Fprint(s.out, indent(st.detail))
			}
			continue
		}
		fmt.Fprintln(s.out, st.desc)
		if err := st.do(); err != nil {
			if st.optional {
				fmt.Fprintf(s.out, "  (failed, carrying on: %v)\n", err)
				continue
			}
			return fmt.Errorf("%s: %s: %w", op, st.desc, err)
		}
	}
	if dryRun {
		fmt.Fprintln(s.out, "dry run: nothing was changed")
	}
	return nil
}

func indent(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString("    ")
		b.WriteString(line)
	}
	if !strings.HasSuffix(s, "\n") {
		b.WriteByte('\n')
	}
	return b.String()
}

// writeStep writes content to the service's definition file.
func (s *Service) writeStep(content string) serviceStep {
	return serviceStep{
		desc:   "write " + s.path + " (mode 0644)",
		detail: content,
		do: func() error {
			// Written in place: the file is small, and a unit manager reads it
			// only when told to (daemon-reload, bootstrap).
			return s.writeFile(s.path, []byte(content), 0o644)
		},
	}
}

// removeStep removes the service's definition file.
func (s *Service) removeStep() serviceStep {
	return serviceStep{desc: "remove " + s.path, do: func() error {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}}
}

// runStep runs a command.
func (s *Service) runStep(optional bool, name string, args ...string) serviceStep {
	return serviceStep{
		desc:     strings.Join(append([]string{name}, args...), " "),
		do:       func() error { return s.run(name, args...) },
		optional: optional,
	}
}

// installed reports whether the service's definition file exists.
func (s *Service) installed() (bool, error) {
	_, err := os.Stat(s.path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, err
}

// notInstalled is the only step of uninstalling what is not installed.
func (s *Service) notInstalled() []serviceStep {
	return []serviceStep{{desc: "not installed: there is no " + s.path}}
}

// runCommand runs a command and puts what it printed into the error.
func runCommand(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

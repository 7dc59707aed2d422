package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/daemon"
	"github.com/tether-dev/tether/platform"
)

// `tether daemon install` and `tether daemon uninstall`: the daemon as the
// OS's service (platform.Service).

func newDaemonInstallCmd(g *globals) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "install [--dry-run] [-- DAEMON FLAGS...]",
		Short: "Run the daemon as a system service: started at boot, restarted when it fails (needs root)",
		Long: `Install writes and enables a service that runs this binary as "tether daemon" and
starts it: a systemd unit (` + platform.SystemdUnitPath + `) on Linux, a launchd daemon
(` + platform.LaunchdPlistPath + `) on macOS, the service "` + platform.WindowsServiceName + `" on Windows.

The global flags --socket (when not the default), --log-level and --pprof go into the
service's command line; daemon flags go after "--". Installing again updates the service
and restarts it.`,
		Example: `  sudo tether daemon install --dry-run
  sudo tether daemon install -- --config /etc/tether/daemon.yaml
  sudo tether --socket /run/tether-2/daemon.sock daemon install -- --tun-name tether2`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && cmd.ArgsLenAtDash() != 0 {
				return fmt.Errorf("unexpected argument %q: daemon flags go after --", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find this binary: %w", err)
			}
			cfg, err := serviceConfig(exe, g, args)
			if err != nil {
				return err
			}
			if env := tetherEnv(); len(env) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: the service does not see this shell's environment (%s); give those settings as daemon flags after -- or in --config\n",
					strings.Join(env, ", "))
			}
			return platform.NewService(cfg, cmd.OutOrStdout()).Install(dryRun)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be written and run; change nothing")
	return cmd
}

func newDaemonUninstallCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "uninstall [--dry-run]",
		Short: "Stop the daemon's system service, disable it and remove it (needs root)",
		Long: `Uninstall stops the service that "tether daemon install" installed (the daemon removes its
routes and TUN device as on SIGTERM), disables it and removes its definition. The session
stays cached for a daemon started later; "tether quit" first ends it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return platform.NewService(platform.ServiceConfig{}, cmd.OutOrStdout()).Uninstall(dryRun)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be run and removed; change nothing")
	return cmd
}

// serviceConfig is the command line of the service: exe (this binary),
// "daemon", the global flags that matter, then the daemon flags the user
// gave after "--", checked here rather than when the service first starts.
func serviceConfig(exe string, g *globals, daemonFlags []string) (platform.ServiceConfig, error) {
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return platform.ServiceConfig{}, fmt.Errorf("this tether runs from Go's build cache (%s), which is soon gone: build it (make build) and install from the binary", exe)
	}
	args := []string{"daemon"}
	if g.socket != daemon.DefaultSocket {
		socket, err := filepath.Abs(g.socket)
		if err != nil {
			return platform.ServiceConfig{}, fmt.Errorf("--socket: %w", err)
		}
		args = append(args, "--socket", socket)
	}
	if g.logLevel != "info" {
		args = append(args, "--log-level", g.logLevel)
	}
	if g.pprofAddr != "" {
		args = append(args, "--pprof", g.pprofAddr)
	}
	if err := checkDaemonFlags(daemonFlags); err != nil {
		return platform.ServiceConfig{}, err
	}
	return platform.ServiceConfig{Binary: exe, Args: append(args, daemonFlags...)}, nil
}

// checkDaemonFlags parses flags as `tether daemon` would.
func checkDaemonFlags(flags []string) error {
	f := newDaemonCmd(&globals{}).Flags()
	f.SetOutput(io.Discard)
	if err := f.Parse(flags); err != nil {
		return fmt.Errorf("daemon flags after --: %w (global flags such as --socket go before \"daemon install\")", err)
	}
	if f.NArg() > 0 {
		return fmt.Errorf("daemon flags after --: unexpected argument %q", f.Arg(0))
	}
	// The service starts in "/": a relative path would name another file.
	if config, _ := f.GetString("config"); config != "" && !filepath.IsAbs(config) {
		return errors.New("daemon flags after --: --config needs an absolute path")
	}
	return nil
}

// tetherEnv lists the TETHER_* variables that configure the daemon in this
// shell, and so are lost to the service. TETHER_SOCKET is carried as
// --socket.
func tetherEnv() []string {
	var names []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "TETHER_") && name != "TETHER_SOCKET" && name != "TETHER_TOKEN" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// notifyHooks are daemon.Config's Ready and Stopping: they tell the
// service manager through n and log what fails, which stops nothing.
func notifyHooks(n *platform.Notifier, log *slog.Logger) (ready, stopping func()) {
	log = log.With("component", "daemon")
	call := func(f func() error, what string) func() {
		return func() {
			if err := f(); err != nil {
				log.Warn("telling the service manager failed", "state", what, "error", err)
			}
		}
	}
	return call(n.Ready, "ready"), call(n.Stopping, "stopping")
}

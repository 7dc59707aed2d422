package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/daemon"
)

// globals are the flags every command takes.
type globals struct {
	socket     string
	noActivity bool
	logLevel   string
	pprofAddr  string
	// logOut is where logger writes, set by openLog for --log-file; nil:
	// stderr.
	logOut io.Writer
}

func newRoot() *cobra.Command {
	g := &globals{}
	var showVersion bool
	root := &cobra.Command{
		Use:           "tether",
		Short:         "Reach a cluster network from your laptop",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if showVersion {
				return runVersion(cmd.Context(), g, cmd.OutOrStdout(), false)
			}
			return cmd.Help()
		},
	}
	root.Flags().BoolVar(&showVersion, "version", false, "show the versions of this client, the daemon and the traffic manager (as `tether version`)")
	socket := os.Getenv("TETHER_SOCKET")
	if socket == "" {
		socket = daemon.DefaultSocket
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.socket, "socket", socket, "control socket of the root daemon (env TETHER_SOCKET)")
	// --no-activity: the command does not count as user activity.
	pf.BoolVar(&g.noActivity, "no-activity", false, "do not count this command as user activity (for monitoring scripts)")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level of daemon and manager: debug, info, warn, error")
	pf.StringVar(&g.pprofAddr, "pprof", "", "serve Go's profiler on this address (daemon and manager), e.g. 127.0.0.1:6060")
	root.AddCommand(
		newLogsCmd(g), newConfigCmd(),
		newDaemonCmd(g), newConnectCmd(g), newStatusCmd(g), newQuitCmd(g), newSessionsCmd(g), newInterceptCmd(g), newLeaveCmd(g), newListCmd(g), newRevokeCmd(g), newUninstallCmd(g), newManagerCmd(g), newAgentCmd(g), newVersionCmd(g), newHelmCmd(g), newForwardCmd(g),
	)
	return root
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var out io.Writer = os.Stderr
	switch {
	case g.logOut != nil:
		out = g.logOut
	case underSystemd():
		// journald stamps each line itself.
		opts.ReplaceAttr = dropTime
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

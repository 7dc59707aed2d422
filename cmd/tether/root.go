package main

import (
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/tether-dev/tether/daemon"
)

// globals are the flags every command takes.
type globals struct {
	socket     string
	noActivity bool
	logLevel   string
	pprofAddr  string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "tether",
		Short:         "Reach a cluster network from your laptop",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	socket := os.Getenv("TETHER_SOCKET")
	if socket == "" {
		socket = daemon.DefaultSocket
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.socket, "socket", socket, "control socket of the root daemon (env TETHER_SOCKET)")
	// --no-activity is part of the CLI contract now; the activity rules
	// (a later issue) give it meaning: the command does not count as use.
	pf.BoolVar(&g.noActivity, "no-activity", false, "do not count this command as user activity (for monitoring scripts)")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level of daemon and manager: debug, info, warn, error")
	pf.StringVar(&g.pprofAddr, "pprof", "", "serve Go's profiler on this address (daemon and manager), e.g. 127.0.0.1:6060")
	root.AddCommand(
		newDaemonCmd(g), newConnectCmd(g), newStatusCmd(g), newQuitCmd(g), newSessionsCmd(g), newInterceptCmd(g), newLeaveCmd(g), newListCmd(g), newRevokeCmd(g), newManagerCmd(g), newAgentCmd(g),
	)
	return root
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// newViper reads configuration with the precedence flags > env TETHER_* >
// file > defaults. Keys are the dotted names users know
// (grpc.connectionTTL); env names replace dots with underscores.
func newViper(cmd *cobra.Command, file string, flagKeys map[string]string) (*viper.Viper, error) {
	v := viper.New()
	v.SetEnvPrefix("TETHER")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for key, flag := range flagKeys {
		if err := v.BindPFlag(key, cmd.Flags().Lookup(flag)); err != nil {
			return nil, err
		}
	}
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return nil, err
		}
	}
	return v, nil
}

package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/credentials"

	"github.com/tether-dev/tether/agent"
	"github.com/tether-dev/tether/tunnel"
)

func newAgentCmd(g *globals) *cobra.Command {
	var configFile, logFile string
	var keys map[string]string // set below, before RunE runs
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the pod-side agent: forward a workload's port to the app or to intercepting developers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, closeLog, err := g.startRole(cmd, logFile, configFile, keys)
			if err != nil {
				return err
			}
			defer closeLog()
			port, err := agentPort(v)
			if err != nil {
				return err
			}
			// The file is read now to fail early, and again for every call
			// to the manager: the kubelet rotates a projected token.
			tokenFile := v.GetString("agent.tokenFile")
			token, err := bearerToken(tokenFile, "agent.tokenFile")
			if err != nil {
				return err
			}
			if tokenFile != "" {
				token = ""
			}
			creds, err := agentCreds(v.GetBool("agent.tls"), v.GetString("agent.caFile"))
			if err != nil {
				return err
			}
			log := g.logger()
			if err := servePprof(g.pprofAddr, log); err != nil {
				return err
			}
			a, err := agent.New(agent.Config{
				Manager: v.GetString("agent.manager"), Creds: creds, Token: token, TokenFile: tokenFile,
				Workload: v.GetString("agent.workload"), Port: uint16(port),
				App: v.GetString("agent.app"), Listen: v.GetString("agent.listen"), Log: log,
			})
			if err != nil {
				return err
			}
			if creds == nil {
				log.Warn("talking to the manager without TLS: the token and traffic travel in clear text", "component", "agent")
			}
			return errors.Join(a.Run(cmd.Context()), a.Close())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "agent configuration file (YAML, keys under agent:)")
	f.StringVar(&logFile, "log-file", "", logFileUsage)
	keys = agentFlags(f)
	return cmd
}

// agentFlags defines the agent's configuration flags and returns their
// keys; `tether config view agent` shares it.
func agentFlags(f *pflag.FlagSet) map[string]string {
	f.String("manager", "", "agent.manager: traffic manager host:port")
	f.String("workload", "", "agent.workload: the workload beside which the agent runs, NAMESPACE/NAME")
	f.Int("port", 0, "agent.port: the workload's port that intercepts name")
	f.String("app", "", "agent.app: the app's address, e.g. 127.0.0.1:8081")
	f.String("listen", "", "agent.listen: address clients connect to (default :PORT)")
	f.String("token-file", "", "agent.tokenFile: file holding the bearer token for the manager, read again for every call (or env TETHER_TOKEN)")
	f.Bool("tls", false, "agent.tls: use TLS to the manager, verified with the system roots")
	f.String("ca-file", "", "agent.caFile: use TLS to the manager, verified with this CA certificate (PEM)")
	return map[string]string{
		"agent.manager": "manager", "agent.workload": "workload", "agent.port": "port",
		"agent.app": "app", "agent.listen": "listen",
		"agent.tokenFile": "token-file", "agent.tls": "tls", "agent.caFile": "ca-file",
	}
}

// agentPort is agent.port, checked.
func agentPort(c *config) (int, error) {
	port, err := strconv.Atoi(c.GetString("agent.port"))
	if err != nil || port < 1 || port > 65535 {
		return 0, c.errorf("agent.port", "%q is not a port (1-65535)", c.GetString("agent.port"))
	}
	return port, nil
}

// agentCreds returns TLS credentials when asked for, verified against
// caFile or the system roots; nil means plaintext.
func agentCreds(useTLS bool, caFile string) (credentials.TransportCredentials, error) {
	if !useTLS && caFile == "" {
		return nil, nil
	}
	var pem []byte
	if caFile != "" {
		var err error
		if pem, err = os.ReadFile(caFile); err != nil {
			return nil, fmt.Errorf("agent.caFile: %w", err)
		}
	}
	creds, err := tunnel.ClientTLS(pem)
	if errors.Is(err, tunnel.ErrNoPEM) {
		return nil, fmt.Errorf("agent.caFile: %s holds no PEM certificate", caFile)
	}
	return creds, err
}

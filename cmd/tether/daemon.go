package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tether-dev/tether/daemon"
	"github.com/tether-dev/tether/platform"
	"github.com/tether-dev/tether/vif"
)

func newDaemonCmd(g *globals) *cobra.Command {
	var configFile, metricsAddr, logFile string
	var keys map[string]string // set below, before RunE runs
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the root daemon in the foreground (needs root)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			closeLog, err := g.openLog(logFile)
			if err != nil {
				return err
			}
			defer closeLog()
			log := g.logger()
			// First, so that the service manager hears of every exit.
			ctx, stop := context.WithCancel(cmd.Context())
			defer stop()
			n := platform.NewNotifier(log, stop)
			defer n.Close()
			ready, stopping := notifyHooks(n, log)
			v, err := loadConfig(cmd.Flags(), configFile, keys)
			if err != nil {
				return err
			}
			ignore, err := daemonIgnorePorts(v)
			if err != nil {
				return err
			}
			floor4, floor6, err := daemonRouteFloors(v)
			if err != nil {
				return err
			}
			setMaxProcs(cmd.Context(), v.GetInt("runtime.maxProcs"), log)
			if err := servePprof(g.pprofAddr, log); err != nil {
				return err
			}
			d, err := daemon.New(daemon.Config{
				Socket:              g.socket,
				SocketGroup:         v.GetString("socket.group"),
				TUNName:             v.GetString("tun.name"),
				DNSAddress:          v.GetString("dns.address"),
				MTU:                 v.GetInt("tun.mtu"),
				IgnoreTCPPorts:      ignore,
				MinPrefixLength:     floor4,
				MinPrefixLengthIPv6: floor6,
				Log:                 log,
				Ready:               ready,
				Stopping:            stopping,
			})
			if err != nil {
				return err
			}
			if err := serveMetrics(metricsAddr, log, d.RegisterMetrics); err != nil {
				return fmt.Errorf("--metrics-addr: %w", err)
			}
			return d.Run(ctx)
		},
	}
	cmd.AddCommand(newDaemonInstallCmd(g), newDaemonUninstallCmd())
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "daemon configuration file (YAML)")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address (/metrics)")
	f.StringVar(&logFile, "log-file", "", logFileUsage)
	keys = daemonFlags(f)
	return cmd
}

// daemonFlags defines the daemon's configuration flags and returns their
// keys; `tether config view daemon` shares it.
func daemonFlags(f *pflag.FlagSet) map[string]string {
	f.String("socket-group", daemon.DefaultSocketGroup, "socket.group: the group that may use the control socket besides root (empty or missing group: root only)")
	f.String("tun-name", "tether%d", "name of the TUN device (%d: first free number)")
	f.Int("mtu", vif.DefaultMTU, "MTU of the TUN device")
	f.String("dns-address", "", "dns.address: where the daemon answers cluster DNS (default: the last address of the first IPv4 subnet)")
	// One P by default: the daemon is one relay pipeline, and handing each
	// packet between threads cost more than a second core gave. Measured in
	// the namespace lab (docs/performance.md): connect p99 3.9 ms -> 0.8 ms,
	// bulk 4.7 -> 5.0 Gbit/s.
	f.Int("max-procs", 1, "runtime.maxProcs: OS threads running Go code at once (0: from 1 up to one per CPU, as the load needs; env GOMAXPROCS wins)")
	f.StringSlice("ignore-tcp-ports", []string{"53"}, "activity.ignoreTCPPorts: tunnels to these TCP ports are not activity")
	f.Int("min-prefix-length", daemon.DefaultMinPrefixLength, "routes.minPrefixLength: refuse IPv4 subnets wider than this prefix length (1-32)")
	f.Int("min-prefix-length-ipv6", daemon.DefaultMinPrefixLengthIPv6, "routes.minPrefixLengthIPv6: refuse IPv6 subnets wider than this prefix length (1-128)")
	return map[string]string{"routes.minPrefixLength": "min-prefix-length", "routes.minPrefixLengthIPv6": "min-prefix-length-ipv6", "tun.name": "tun-name", "tun.mtu": "mtu", "activity.ignoreTCPPorts": "ignore-tcp-ports", "runtime.maxProcs": "max-procs", "socket.group": "socket-group", "dns.address": "dns-address"}
}

// daemonIgnorePorts is activity.ignoreTCPPorts, checked. An empty list is
// a choice (count every port), so it is empty, not nil ("unset").
func daemonIgnorePorts(c *config) ([]uint16, error) {
	ignore := []uint16{}
	for _, p := range c.GetStringSlice("activity.ignoreTCPPorts") {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return nil, c.errorf("activity.ignoreTCPPorts", "%q is not a port number", p)
		}
		ignore = append(ignore, uint16(n))
	}
	return ignore, nil
}

// daemonRouteFloors are routes.minPrefixLength and
// routes.minPrefixLengthIPv6, checked. 0 would let a manager route half
// of everything, so the floor is at least 1; the union rule stops the rest.
func daemonRouteFloors(c *config) (v4, v6 int, err error) {
	v4, v6 = c.GetInt("routes.minPrefixLength"), c.GetInt("routes.minPrefixLengthIPv6")
	if v4 < 1 || v4 > 32 {
		return 0, 0, c.errorf("routes.minPrefixLength", "%d is not an IPv4 prefix length from 1 to 32", v4)
	}
	if v6 < 1 || v6 > 128 {
		return 0, 0, c.errorf("routes.minPrefixLengthIPv6", "%d is not an IPv6 prefix length from 1 to 128", v6)
	}
	return v4, v6, nil
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/activity"
	"github.com/tether-dev/tether/daemon"
	pb "github.com/tether-dev/tether/rpc/daemon"
	"github.com/tether-dev/tether/wire"
)

// callDaemon runs fn against the daemon, turning "nobody listens" into an
// error that says what to do.
func callDaemon(ctx context.Context, g *globals, timeout time.Duration, fn func(context.Context, pb.DaemonClient) (*pb.StatusResponse, error)) (*pb.StatusResponse, error) {
	cc, err := daemon.Dial(g.socket)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if g.noActivity {
		ctx = metadata.AppendToOutgoingContext(ctx, wire.MDNoActivity, "1")
	}
	resp, err := fn(ctx, pb.NewDaemonClient(cc))
	if msg := status.Convert(err).Message(); status.Code(err) == codes.Unavailable && strings.Contains(msg, g.socket) {
		if strings.Contains(msg, "permission denied") {
			return nil, fmt.Errorf("permission denied on the control socket %s: it is for root and the group %q (daemon --socket-group): use sudo, or join the group (`sudo usermod -aG %s $USER`, then log in again)",
				g.socket, daemon.DefaultSocketGroup, daemon.DefaultSocketGroup)
		}
		return nil, fmt.Errorf("no daemon answers on %s: `sudo tether connect` starts one, or run `tether daemon` as root", g.socket)
	}
	return resp, err
}

func newConnectCmd(g *globals) *cobra.Command {
	var mgr, tokenFile, caFile, namespace string
	var allow, useTLS bool
	cmd := &cobra.Command{
		Use:   "connect",
		Short: "Connect to a traffic manager and route its subnets through the VIF",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := bearerToken(tokenFile, "--token-file")
			if err != nil {
				return err
			}
			req := &pb.ConnectRequest{Manager: mgr, AllowConflictingSubnets: allow, User: currentUser(), Tls: useTLS, Token: token, Namespace: namespace}
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
				req.CaPem, req.Tls = b, true
			}
			if err := ensureDaemon(cmd.Context(), g, cmd.ErrOrStderr()); err != nil {
				return err
			}
			// The check itself is not activity: the connect after it is.
			quiet := *g
			quiet.noActivity = true
			st, err := callDaemon(cmd.Context(), &quiet, 10*time.Second, func(ctx context.Context, c pb.DaemonClient) (*pb.StatusResponse, error) {
				return c.Status(ctx, &pb.StatusRequest{})
			})
			if err != nil {
				return err
			}
			if err := checkDaemonProtocol(st); err != nil {
				return err
			}
			resp, err := callDaemon(cmd.Context(), g, 30*time.Second, func(ctx context.Context, c pb.DaemonClient) (*pb.StatusResponse, error) {
				if uid := os.Getenv("SUDO_UID"); uid != "" {
					// `sudo tether connect`: the session belongs to the user
					// who ran sudo (the daemon believes this from root only).
					ctx = metadata.AppendToOutgoingContext(ctx, wire.MDForUID, uid)
				}
				return c.Connect(ctx, req)
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Connected to %s: routing %s through %s\n", resp.Manager, strings.Join(resp.Subnets, ", "), resp.Device)
			for _, n := range versionNotes(resp) {
				fmt.Fprintf(cmd.ErrOrStderr(), "tether: note: %s\n", n)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&mgr, "manager", os.Getenv("TETHER_MANAGER"), "traffic manager host:port (env TETHER_MANAGER)")
	cmd.Flags().BoolVar(&allow, "allow-conflicting-subnets", false, "route subnets even when they overlap a network the host is directly connected to")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the bearer token for the manager (or env TETHER_TOKEN)")
	cmd.Flags().BoolVar(&useTLS, "tls", false, "use TLS to the manager, verified with the system roots")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "use TLS to the manager, verified with this CA certificate (PEM)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "the session's Kubernetes namespace: short names resolve in it")
	return cmd
}

func newQuitCmd(g *globals) *cobra.Command {
	var stop bool
	cmd := &cobra.Command{
		Use:   "quit",
		Short: "End the session: close tunnels, remove routes and the TUN",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stop && probeSocket(g.socket) == socketAbsent {
				fmt.Fprintf(cmd.OutOrStdout(), "No tether daemon runs on %s\n", g.socket)
				return nil
			}
			_, err := callDaemon(cmd.Context(), g, 30*time.Second, func(ctx context.Context, c pb.DaemonClient) (*pb.StatusResponse, error) {
				return c.Quit(ctx, &pb.QuitRequest{})
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Disconnected")
			if !stop {
				return nil
			}
			if err := stopDaemon(cmd.Context(), g); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Stopped the tether daemon")
			return nil
		},
	}
	cmd.Flags().BoolVar(&stop, "stop-daemon", false, "then stop the daemon (systemctl stop when it runs as the installed service)")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the session: manager, subnets, tunnel counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := callDaemon(cmd.Context(), g, 10*time.Second, func(ctx context.Context, c pb.DaemonClient) (*pb.StatusResponse, error) {
				return c.Status(ctx, &pb.StatusRequest{})
			})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), toStatusJSON(resp))
			}
			printStatus(cmd.OutOrStdout(), resp)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object (fields documented in docs/operations.md)")
	return cmd
}

// statusJSON is the stable output of `tether status --json`; docs/operations.md
// documents every field. Add fields, never rename or remove them.
type statusJSON struct {
	Connected bool     `json:"connected"`
	Reason    string   `json:"reason,omitempty"`
	Manager   string   `json:"manager"`
	User      string   `json:"user"`
	Subnets   []string `json:"subnets"`
	// RefusedSubnets are what the manager advertised and the daemon
	// does not route, each saying why.
	RefusedSubnets []string          `json:"refused_subnets"`
	Namespace      string            `json:"namespace,omitempty"`
	SessionID      string            `json:"session_id"`
	Device         string            `json:"device"`
	Link           string            `json:"link"`
	Offloads       string            `json:"offloads"`
	LastActivity   *lastActivityJSON `json:"last_activity"`
	ManagerView    *managerViewJSON  `json:"manager_view"`
	Counters       countersJSON      `json:"counters"`
	Intercepts     []interceptJSON   `json:"intercepts"`
	Notices        []string          `json:"notices"`
	DNS            string            `json:"dns"`
	DNSDomains     []string          `json:"dns_domains"`
	DNSConfig      string            `json:"dns_config,omitempty"`
	DNSSearch      []string          `json:"dns_search"`
	// A restarted daemon retrying its cached session (link "resuming").
	Resuming          bool    `json:"resuming"`
	ResumeAttempts    uint32  `json:"resume_attempts,omitempty"`
	NextResumeSeconds float64 `json:"next_resume_seconds,omitempty"`
	// VersionNotes name a daemon or manager whose protocol differs from
	// the client's, and which side to upgrade.
	VersionNotes []string `json:"version_notes"`
}

type lastActivityJSON struct {
	SecondsAgo float64 `json:"seconds_ago"`
	Reason     string  `json:"reason"`
}

// managerViewJSON is the session as the manager saw it at the last report.
type managerViewJSON struct {
	State                 string  `json:"state"`
	IdleSeconds           float64 `json:"idle_seconds"`
	HoldsBlockRight       bool    `json:"holds_block_right"`
	BlockRightLeftSeconds float64 `json:"block_right_left_seconds"`
	TTLLeftSeconds        float64 `json:"ttl_left_seconds"`
}

type countersJSON struct {
	TCPTunnels     uint64 `json:"tcp_tunnels"`
	TCPTunnelsLive uint64 `json:"tcp_tunnels_live"`
	TCPRefused     uint64 `json:"tcp_refused"`
	UDPFlows       uint64 `json:"udp_flows"`
	UDPFlowsLive   uint64 `json:"udp_flows_live"`
	BytesOut       uint64 `json:"bytes_out"`
	BytesIn        uint64 `json:"bytes_in"`
	InboundFlows   uint64 `json:"inbound_flows"`
	ActivityEvents uint64 `json:"activity_events"`
}

func toStatusJSON(r *pb.StatusResponse) statusJSON {
	c := r.GetCounters()
	subnets := r.Subnets
	if subnets == nil {
		subnets = []string{}
	}
	out := statusJSON{
		Connected: r.Connected, Reason: r.Reason, Manager: r.Manager, User: r.User, Subnets: subnets,
		SessionID: r.SessionId, Device: r.Device, Link: r.Link, Offloads: r.Offloads,
		Counters: countersJSON{
			TCPTunnels: c.GetTcpTunnels(), TCPTunnelsLive: c.GetTcpTunnelsLive(), TCPRefused: c.GetTcpRefused(),
			UDPFlows: c.GetUdpFlows(), UDPFlowsLive: c.GetUdpFlowsLive(), BytesOut: c.GetBytesOut(), BytesIn: c.GetBytesIn(),
			InboundFlows: c.GetInboundFlows(), ActivityEvents: c.GetActivityEvents(),
		},
	}
	out.Resuming, out.ResumeAttempts, out.NextResumeSeconds = r.Resuming, r.ResumeAttempts, r.NextResumeSeconds
	out.Intercepts, out.Notices = []interceptJSON{}, append([]string{}, r.Notices...)
	out.DNS, out.DNSDomains, out.DNSConfig = r.Dns, append([]string{}, r.DnsDomains...), r.DnsConfig
	out.RefusedSubnets, out.Namespace, out.DNSSearch = append([]string{}, r.RefusedSubnets...), r.Namespace, append([]string{}, r.DnsSearch...)
	out.VersionNotes = append([]string{}, versionNotes(r)...)
	for _, li := range r.Intercepts {
		x := toInterceptJSON(li.Info)
		x.LocalPort, x.PortMap = li.LocalPort, li.PortMap
		out.Intercepts = append(out.Intercepts, x)
	}
	if a := r.Activity; a != nil && a.LastSecondsAgo >= 0 {
		out.LastActivity = &lastActivityJSON{SecondsAgo: a.LastSecondsAgo, Reason: a.LastReason}
	}
	if v := r.ManagerView; v != nil {
		out.ManagerView = &managerViewJSON{
			State: v.State, IdleSeconds: ms(v.IdleMs), HoldsBlockRight: v.HoldsBlockRight,
			BlockRightLeftSeconds: ms(v.BlockRightLeftMs), TTLLeftSeconds: ms(v.TtlLeftMs),
		}
	}
	return out
}

func ms(v int64) float64 { return float64(v) / 1000 }

func printStatus(w io.Writer, r *pb.StatusResponse) {
	defer func() {
		for _, n := range versionNotes(r) {
			fmt.Fprintf(w, "  Version:  %s\n", n)
		}
	}()
	if !r.Connected {
		switch {
		case r.Resuming && r.ResumeAttempts > 0:
			fmt.Fprintf(w, "Not connected: resuming the session with %s (%d attempts failed; next in %.0fs)\n", r.Manager, r.ResumeAttempts, r.NextResumeSeconds)
		case r.Resuming:
			fmt.Fprintf(w, "Not connected: resuming the session with %s\n", r.Manager)
		case r.Link == "connecting":
			fmt.Fprintf(w, "Not connected: connecting to %s\n", r.Manager)
		default:
			fmt.Fprintln(w, "Not connected")
		}
		if r.Reason != "" {
			fmt.Fprintln(w, "  Reason:", r.Reason)
		}
		return
	}
	c := r.GetCounters()
	fmt.Fprintf(w, "Connected to %s (%s)\n", r.Manager, r.Link)
	fmt.Fprintf(w, "  User:     %s\n", r.User)
	fmt.Fprintf(w, "  Session:  %s\n", r.SessionId)
	if a := r.Activity; a != nil && a.LastSecondsAgo >= 0 {
		fmt.Fprintf(w, "  Activity: %.0fs ago (%s)\n", a.LastSecondsAgo, a.LastReason)
	}
	if v := r.ManagerView; v != nil {
		block := "does not block conflicting intercepts"
		if v.HoldsBlockRight {
			block = fmt.Sprintf("blocks conflicting intercepts for %.0fs more if idle", ms(v.BlockRightLeftMs))
		}
		idle := fmt.Sprintf("idle %.0fs", ms(v.IdleMs))
		if v.State == activity.Unknown.String() {
			// A restarted manager that has no dated report yet.
			idle = fmt.Sprintf("idle at least %.0fs (last activity not yet reported)", ms(v.IdleMs))
		}
		fmt.Fprintf(w, "  Manager:  %s, %s; %s; TTL left %.0fs\n", v.State, idle, block, ms(v.TtlLeftMs))
	}
	fmt.Fprintf(w, "  Subnets:  %s via %s\n", strings.Join(r.Subnets, ", "), r.Device)
	for _, why := range r.RefusedSubnets {
		fmt.Fprintf(w, "  Refused:  %s\n", why)
	}
	fmt.Fprintf(w, "  TCP:      %d live, %d opened, %d refused\n", c.GetTcpTunnelsLive(), c.GetTcpTunnels(), c.GetTcpRefused())
	fmt.Fprintf(w, "  UDP:      %d live, %d opened\n", c.GetUdpFlowsLive(), c.GetUdpFlows())
	fmt.Fprintf(w, "  Bytes:    %d out, %d in\n", c.GetBytesOut(), c.GetBytesIn())
	fmt.Fprintf(w, "  Offloads: %s\n", r.Offloads)
	if r.Dns != "" {
		fmt.Fprintf(w, "  DNS:      %s for %s (%s)\n", r.Dns, strings.Join(r.DnsDomains, ", "), r.DnsConfig)
		if len(r.DnsSearch) > 0 {
			fmt.Fprintf(w, "  Search:   %s\n", strings.Join(r.DnsSearch, ", "))
		}
	}
	for _, li := range r.Intercepts {
		x := li.Info
		fmt.Fprintf(w, "  Intercept %s (%s): %s port %d %s -> 127.0.0.1:%d%s, %s\n", x.Spec.GetName(), x.Id, x.Spec.GetWorkload(), x.Spec.GetPort(), filterText(x.Spec), li.LocalPort, otherPortsText(x, li.PortMap, li.LocalPort), x.State)
		if x.Message != "" {
			fmt.Fprintf(w, "    %s\n", x.Message)
		}
	}
	for _, n := range r.Notices {
		fmt.Fprintf(w, "  Notice: %s\n", n)
	}
}

// printJSON writes v to w as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// bearerToken is $TETHER_TOKEN, or the trimmed contents of file when one is
// named; what names the setting in errors.
func bearerToken(file, what string) (string, error) {
	if file == "" {
		return os.Getenv("TETHER_TOKEN"), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

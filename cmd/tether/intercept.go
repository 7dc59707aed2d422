package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
)

// call runs fn against the daemon, within timeout, for commands whose
// answer is not a status.
func call(cmd *cobra.Command, g *globals, timeout time.Duration, fn func(context.Context, pb.DaemonClient) error) error {
	_, err := callDaemon(cmd.Context(), g, timeout, func(ctx context.Context, c pb.DaemonClient) (*pb.StatusResponse, error) {
		return nil, fn(ctx, c)
	})
	return err
}

func newInterceptCmd(g *globals) *cobra.Command {
	var (
		workload string
		port, to uint32
		headers  []string
		path     string
		replace  bool
		toPorts  []string
	)
	cmd := &cobra.Command{
		Use:   "intercept NAME --workload NS/NAME --port PORT --to LOCALPORT",
		Short: "Route a workload's traffic (all, or HTTP requests matching a filter) to a local port",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := &pbm.InterceptSpec{Name: args[0], Workload: workload, Port: port, Kind: pbm.InterceptKind_GLOBAL, Path: path}
			if len(headers) > 0 || path != "" {
				spec.Kind, spec.Headers = pbm.InterceptKind_HTTP, map[string]string{}
				for _, h := range headers {
					name, re, ok := strings.Cut(h, "=")
					if !ok || name == "" {
						return fmt.Errorf("--http-header %q: want NAME=REGEX", h)
					}
					spec.Headers[strings.ToLower(name)] = re
				}
			}
			if replace {
				if spec.Kind == pbm.InterceptKind_HTTP {
					return fmt.Errorf("--replace takes all traffic; it cannot have --http-header or --http-path")
				}
				spec.Kind = pbm.InterceptKind_REPLACE
			}
			portMap, err := parsePortMap(toPorts)
			if err != nil {
				return err
			}
			var info *pbm.InterceptInfo
			err = call(cmd, g, 30*time.Second, func(ctx context.Context, c pb.DaemonClient) (err error) {
				info, err = c.Intercept(ctx, &pb.InterceptRequest{Spec: spec, LocalPort: to, PortMap: portMap})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Intercept %s (%s): %s port %d %s -> 127.0.0.1:%d%s\n", spec.Name, info.Id, workload, port, filterText(spec), to, otherPortsText(info, portMap, to))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&workload, "workload", "", "the workload, NAMESPACE/NAME")
	f.Uint32Var(&port, "port", 0, "the workload's port")
	f.Uint32Var(&to, "to", 0, "the local port that receives the traffic")
	f.StringArrayVar(&headers, "http-header", nil, "only HTTP requests whose header NAME fully matches REGEX (NAME=REGEX, repeatable, RE2)")
	f.StringVar(&path, "http-path", "", "only HTTP requests whose path fully matches REGEX (RE2)")
	f.BoolVar(&replace, "replace", false, "take the workload's ports (--port, --to-port and those its agents declared by now); its app gets no traffic")
	f.StringArrayVar(&toPorts, "to-port", nil, "with --replace: the local port for another workload port (WORKLOADPORT=LOCALPORT, repeatable); covered ports not listed go to the same port number locally (to --to when there is no --port)")
	for _, name := range []string{"workload", "to"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

// parsePortMap parses --to-port values; the daemon checks the ports.
func parsePortMap(vals []string) (map[uint32]uint32, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := make(map[uint32]uint32, len(vals))
	for _, v := range vals {
		w, l, ok := strings.Cut(v, "=")
		wp, werr := strconv.ParseUint(w, 10, 16)
		lp, lerr := strconv.ParseUint(l, 10, 16)
		if !ok || werr != nil || lerr != nil {
			return nil, fmt.Errorf("--to-port %q: want WORKLOADPORT=LOCALPORT", v)
		}
		m[uint32(wp)] = uint32(lp)
	}
	return m, nil
}

// otherPortsText says where a replace intercept sends the other workload
// ports it covers (the daemon's rule: mapped ones to their local port, the
// rest to the same port number, or to --to when the intercept names no
// port). It covers no others: their flows are refused.
func otherPortsText(info *pbm.InterceptInfo, portMap map[uint32]uint32, to uint32) string {
	spec := info.GetSpec()
	if spec.GetKind() != pbm.InterceptKind_REPLACE {
		return ""
	}
	var others []string
	for _, p := range info.GetPorts() {
		local := p
		switch {
		case p == spec.GetPort():
			continue
		case portMap[p] != 0:
			local = portMap[p]
		case spec.GetPort() == 0:
			local = to
		}
		others = append(others, fmt.Sprintf("%d -> 127.0.0.1:%d", p, local))
	}
	if len(others) == 0 {
		return "; no other ports"
	}
	return "; other ports: " + strings.Join(others, ", ")
}

func newLeaveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "leave NAME",
		Short: "End one of your intercepts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, g, 30*time.Second, func(ctx context.Context, c pb.DaemonClient) error {
				_, err := c.Leave(ctx, &pb.LeaveRequest{Name: args[0]})
				return err
			})
		},
	}
}

func newRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "End anyone's intercept (needs get and update on the traffic-manager configmap)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *pbm.RevokeInterceptResponse
			err := call(cmd, g, 30*time.Second, func(ctx context.Context, c pb.DaemonClient) (err error) {
				resp, err = c.Revoke(ctx, &pbm.RevokeInterceptRequest{Id: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			x := resp.Intercept
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked intercept %s (%s) of %s@%s\n", x.Spec.GetName(), x.Id, x.OwnerUser, x.OwnerHost)
			return nil
		},
	}
}

// interceptJSON is one row of `tether list --json`; fields are only added.
type interceptJSON struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	OwnerUser  string  `json:"owner_user"`
	OwnerHost  string  `json:"owner_host"`
	Workload   string  `json:"workload"`
	Port       uint32  `json:"port"`
	Kind       string  `json:"kind"`
	Filter     string  `json:"filter"`
	State      string  `json:"state"`
	Message    string  `json:"message,omitempty"`
	OwnerIdleS float64 `json:"owner_idle_seconds"`
	Blocks     bool    `json:"blocks"`
	LocalPort  uint32  `json:"local_port,omitempty"`
	// Replace intercepts: workload port -> local port, for ports --to-port
	// mapped (the rest go to the same port number).
	PortMap map[uint32]uint32 `json:"port_map,omitempty"`
	// Ports are the workload ports the intercept covers.
	Ports []uint32 `json:"ports,omitempty"`
}

func toInterceptJSON(x *pbm.InterceptInfo) interceptJSON {
	return interceptJSON{
		ID: x.Id, Name: x.Spec.GetName(), OwnerUser: x.OwnerUser, OwnerHost: x.OwnerHost,
		Workload: x.Spec.GetWorkload(), Port: x.Spec.GetPort(), Kind: x.Spec.GetKind().String(), Filter: filterText(x.Spec),
		State: x.State, Message: x.Message, OwnerIdleS: ms(x.OwnerIdleMs), Blocks: x.Blocks, Ports: x.Ports,
	}
}

func newListCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every intercept in the cluster: owner, filter, state, whether it blocks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp *pbm.ListInterceptsResponse
			err := call(cmd, g, 30*time.Second, func(ctx context.Context, c pb.DaemonClient) (err error) {
				resp, err = c.List(ctx, &pbm.ListInterceptsRequest{})
				return err
			})
			if err != nil {
				return err
			}
			rows := make([]interceptJSON, 0, len(resp.Intercepts))
			for _, x := range resp.Intercepts {
				rows = append(rows, toInterceptJSON(x))
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), rows)
			}
			printIntercepts(cmd.OutOrStdout(), rows)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func printIntercepts(w io.Writer, rows []interceptJSON) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tOWNER\tWORKLOAD\tPORT\tFILTER\tSTATE\tIDLE\tBLOCKS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s@%s\t%s\t%d\t%s\t%s\t%s\t%v\n", r.ID, r.Name, r.OwnerUser, r.OwnerHost, r.Workload, r.Port, r.Filter, r.State,
			(time.Duration(r.OwnerIdleS) * time.Second).String(), r.Blocks)
	}
	tw.Flush()
	for _, r := range rows {
		if r.Message != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Name, r.Message)
		}
	}
}

// filterText renders an intercept's filter for people.
func filterText(s *pbm.InterceptSpec) string {
	switch s.GetKind() {
	case pbm.InterceptKind_REPLACE:
		return "replace (all ports)"
	case pbm.InterceptKind_HTTP:
	default:
		return "all traffic"
	}
	var parts []string
	for name, re := range s.Headers {
		parts = append(parts, name+"="+re)
	}
	sort.Strings(parts)
	if s.Path != "" {
		parts = append(parts, "path="+s.Path)
	}
	return strings.Join(parts, " ")
}

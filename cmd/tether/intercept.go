package main

import (
	"cmp"
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
		workload, namespace string
		port, to            uint32
		headers             []string
		path                string
		replace             bool
		toPorts             []string
	)
	cmd := &cobra.Command{
		Use:   "intercept WORKLOAD --port PORT --to LOCALPORT",
		Short: "Route a workload's traffic (all, or HTTP requests matching a filter) to a local port",
		Long: `Route a workload's traffic (all, or HTTP requests matching a filter) to a local port.

WORKLOAD is a Deployment, StatefulSet or ReplicaSet in --namespace (the
kubeconfig's current context's by default); the intercept is named after it.
With --workload NAMESPACE/NAME (a manager without Kubernetes), the argument
is the intercept's name instead.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := interceptTarget(args[0], workload, namespace)
			if err != nil {
				return err
			}
			spec.Port, spec.Kind, spec.Path = port, pbm.InterceptKind_GLOBAL, path
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
			fmt.Fprintf(cmd.OutOrStdout(), "Intercept %s (%s): %s port %d %s -> 127.0.0.1:%d%s\n", spec.Name, info.Id, spec.Workload, port, filterText(spec), to, otherPortsText(info, portMap, to))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&workload, "workload", "", "the workload, NAMESPACE/NAME; the argument is then the intercept's name")
	f.StringVarP(&namespace, "namespace", "n", "", namespaceUsage)
	f.Uint32Var(&port, "port", 0, "the workload's port")
	f.Uint32Var(&to, "to", 0, "the local port that receives the traffic")
	f.StringArrayVar(&headers, "http-header", nil, "only HTTP requests whose header NAME fully matches REGEX (NAME=REGEX, repeatable, RE2)")
	f.StringVar(&path, "http-path", "", "only HTTP requests whose path fully matches REGEX (RE2)")
	f.BoolVar(&replace, "replace", false, "take the workload's ports (--port, --to-port, those its Services target and those its agents declared by now); its app gets no traffic")
	f.StringArrayVar(&toPorts, "to-port", nil, "with --replace: the local port for another workload port (WORKLOADPORT=LOCALPORT, repeatable); covered ports not listed go to the same port number locally (to --to when there is no --port)")
	cmd.MarkFlagRequired("to")
	cmd.RegisterFlagCompletionFunc("workload", completeFromDaemon(g, workloads))
	cmd.ValidArgsFunction = completeFirstArg(g, namespaceWorkloads(&namespace, &workload))
	return cmd
}

// interceptTarget is the intercept's name and workload: the workload arg
// in namespace (named after it), or, with --workload NS/NAME, the
// intercept arg on that workload.
func interceptTarget(arg, workload, namespace string) (*pbm.InterceptSpec, error) {
	if workload != "" {
		if namespace != "" {
			return nil, fmt.Errorf("--namespace names the namespace of a WORKLOAD argument; --workload %s has its own", workload)
		}
		return &pbm.InterceptSpec{Name: arg, Workload: workload}, nil
	}
	if strings.Contains(arg, "/") {
		return nil, fmt.Errorf("%q: give the workload's name, and its namespace with --namespace (or --workload NAMESPACE/NAME with a name for the intercept)", arg)
	}
	ns, err := workloadNamespace(namespace)
	if err != nil {
		return nil, err
	}
	return &pbm.InterceptSpec{Name: arg, Workload: ns + "/" + arg}, nil
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
		Use:               "leave NAME",
		Short:             "End one of your intercepts",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeFirstArg(g, myInterceptNames),
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
		Use:               "revoke ID",
		Short:             "End anyone's intercept (needs get and update on the traffic-manager configmap)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeFirstArg(g, interceptIDs),
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
	var asJSON, listWorkloads bool
	var namespace string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every intercept in the cluster (owner, filter, state, whether it blocks), or with --workloads what can be intercepted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listWorkloads {
				return listWorkloadsCmd(cmd, g, namespace, asJSON)
			}
			if namespace != "" {
				return fmt.Errorf("--namespace goes with --workloads: tether list shows the intercepts of every namespace")
			}
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
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print a JSON array")
	f.BoolVar(&listWorkloads, "workloads", false, "list the Deployments, StatefulSets and ReplicaSets of the namespace that can be intercepted: ports, intercepts, agents (needs list on deployments there)")
	f.StringVarP(&namespace, "namespace", "n", "", "with --workloads: "+namespaceUsage)
	return cmd
}

// workloadJSON is one row of `tether list --workloads --json`; fields are
// only added.
type workloadJSON struct {
	Namespace string             `json:"namespace"`
	Name      string             `json:"name"`
	Kind      string             `json:"kind,omitempty"`
	Ports     []workloadPortJSON `json:"ports"`
	// Agents is how many of its agents are connected to the manager;
	// AgentState says it for people ("2 ready", "none").
	Agents     uint32                  `json:"agents"`
	AgentState string                  `json:"agent_state"`
	Intercepts []workloadInterceptJSON `json:"intercepts"`
}

type workloadPortJSON struct {
	Port      uint32   `json:"port"`
	Name      string   `json:"name,omitempty"`
	Container string   `json:"container,omitempty"`
	Services  []string `json:"services"` // "web:80": Service and port
}

type workloadInterceptJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	OwnerUser string `json:"owner_user"`
	OwnerHost string `json:"owner_host"`
	Port      uint32 `json:"port"`
	State     string `json:"state"`
}

func toWorkloadJSON(w *pbm.WorkloadInfo) workloadJSON {
	row := workloadJSON{Namespace: w.Namespace, Name: w.Name, Kind: w.Kind, Agents: w.Agents, AgentState: agentState(w.Agents),
		Ports: []workloadPortJSON{}, Intercepts: []workloadInterceptJSON{}}
	for _, p := range w.Ports {
		row.Ports = append(row.Ports, workloadPortJSON{Port: p.Port, Name: p.Name, Container: p.Container, Services: p.Services})
	}
	for _, x := range w.Intercepts {
		row.Intercepts = append(row.Intercepts, workloadInterceptJSON{ID: x.Id, Name: x.Spec.GetName(), OwnerUser: x.OwnerUser, OwnerHost: x.OwnerHost,
			Port: x.Spec.GetPort(), State: x.State})
	}
	return row
}

// agentState says how many agents serve a workload now.
func agentState(n uint32) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d ready", n)
}

func listWorkloadsCmd(cmd *cobra.Command, g *globals, namespace string, asJSON bool) error {
	ns, err := workloadNamespace(namespace)
	if err != nil {
		return err
	}
	var resp *pbm.ListWorkloadsResponse
	err = call(cmd, g, 30*time.Second, func(ctx context.Context, c pb.DaemonClient) (err error) {
		resp, err = c.ListWorkloads(ctx, &pbm.ListWorkloadsRequest{Namespace: ns})
		return err
	})
	if err != nil {
		return err
	}
	rows := make([]workloadJSON, 0, len(resp.Workloads))
	for _, w := range resp.Workloads {
		rows = append(rows, toWorkloadJSON(w))
	}
	if asJSON {
		return printJSON(cmd.OutOrStdout(), rows)
	}
	printWorkloads(cmd.OutOrStdout(), ns, rows)
	return nil
}

func printWorkloads(w io.Writer, ns string, rows []workloadJSON) {
	if len(rows) == 0 {
		fmt.Fprintf(w, "No workloads in namespace %s\n", ns)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tPORTS\tAGENTS\tINTERCEPTS")
	for _, r := range rows {
		ports := make([]string, 0, len(r.Ports))
		for _, p := range r.Ports {
			s := strconv.Itoa(int(p.Port))
			if p.Name != "" {
				s += "/" + p.Name
			}
			if len(p.Services) > 0 {
				s += " (" + strings.Join(p.Services, ", ") + ")"
			}
			ports = append(ports, s)
		}
		xs := make([]string, 0, len(r.Intercepts))
		for _, x := range r.Intercepts {
			xs = append(xs, fmt.Sprintf("%s (%s@%s, %s)", x.Name, x.OwnerUser, x.OwnerHost, x.State))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, cmp.Or(r.Kind, "-"), cmp.Or(strings.Join(ports, ", "), "-"), r.AgentState, cmp.Or(strings.Join(xs, ", "), "-"))
	}
	tw.Flush()
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

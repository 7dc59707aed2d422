package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
)

// Shell completion that asks the daemon (`tether completion bash|zsh|fish`
// prints the script; cobra's __complete command calls these):
//   - `tether leave <TAB>`: the names of this session's intercepts;
//   - `tether revoke <TAB>`: every intercept's id, described by name, owner
//     and workload;
//   - `--workload <TAB>`: the workloads an agent serves now, and any with an
//     intercept (the manager's list);
//   - `tether intercept <TAB>`: the workloads of the namespace (-n, else the
//     kubeconfig's), described by kind.
//
// A completion never counts as activity (it runs with --no-activity) and
// gives up after completeTimeout: a TAB must not hang on a stuck daemon.

const completeTimeout = 2 * time.Second

// completeFromDaemon runs list against the daemon without counting as
// activity and offers its answers; no daemon, no suggestions (and no file
// names).
func completeFromDaemon(g *globals, list func(context.Context, pb.DaemonClient) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		quiet := *g
		quiet.noActivity = true
		var out []string
		_, err := callDaemon(cmd.Context(), &quiet, completeTimeout, func(ctx context.Context, c pb.DaemonClient) (*pb.StatusResponse, error) {
			var err error
			out, err = list(ctx, c)
			return nil, err
		})
		if err != nil {
			cobra.CompDebugln(fmt.Sprintf("tether completion: %v", err), false)
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeFirstArg completes a command's one argument from the daemon,
// and nothing once it is given.
func completeFirstArg(g *globals, list func(context.Context, pb.DaemonClient) ([]string, error)) cobra.CompletionFunc {
	complete := completeFromDaemon(g, list)
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return complete(cmd, args, toComplete)
	}
}

// myInterceptNames are the names of this session's intercepts.
func myInterceptNames(ctx context.Context, c pb.DaemonClient) ([]string, error) {
	st, err := c.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, li := range st.Intercepts {
		names = append(names, li.Info.GetSpec().GetName())
	}
	return names, nil
}

// interceptIDs are every intercept's id, each with a description.
func interceptIDs(ctx context.Context, c pb.DaemonClient) ([]string, error) {
	resp, err := c.List(ctx, &pbm.ListInterceptsRequest{})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, x := range resp.Intercepts {
		ids = append(ids, cobra.CompletionWithDesc(x.Id, fmt.Sprintf("%s of %s@%s on %s, %s", x.Spec.GetName(), x.OwnerUser, x.OwnerHost, x.Spec.GetWorkload(), x.State)))
	}
	return ids, nil
}

// workloads are those an agent serves and those with an intercept.
func workloads(ctx context.Context, c pb.DaemonClient) ([]string, error) {
	resp, err := c.List(ctx, &pbm.ListInterceptsRequest{})
	if err != nil {
		return nil, err
	}
	ws := append([]string{}, resp.Workloads...)
	for _, x := range resp.Intercepts {
		ws = append(ws, x.Spec.GetWorkload())
	}
	slices.Sort(ws)
	return slices.Compact(ws), nil
}

// namespaceWorkloads lists the workloads of the namespace that
// *namespace names (as workloadNamespace reads it), each described by its
// kind; nothing when *workload is set (the argument is then a new
// intercept's name).
func namespaceWorkloads(namespace, workload *string) func(context.Context, pb.DaemonClient) ([]string, error) {
	return func(ctx context.Context, c pb.DaemonClient) ([]string, error) {
		if *workload != "" {
			return nil, nil
		}
		ns, err := workloadNamespace(*namespace)
		if err != nil {
			return nil, err
		}
		resp, err := c.ListWorkloads(ctx, &pbm.ListWorkloadsRequest{Namespace: ns})
		if err != nil {
			return nil, err
		}
		out := make([]string, 0, len(resp.Workloads))
		for _, w := range resp.Workloads {
			out = append(out, w.Name+"\t"+cmp.Or(w.Kind, "workload")+" in "+ns+", agents: "+agentState(w.Agents))
		}
		return out, nil
	}
}

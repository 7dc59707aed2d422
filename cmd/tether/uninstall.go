package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/kube"
	"github.com/tether-dev/tether/kube/inject"
	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
)

func newUninstallCmd(g *globals) *cobra.Command {
	var agents, inCluster bool
	cmd := &cobra.Command{
		Use:   "uninstall --agents",
		Short: "Take every injected agent out: workloads roll back to their pods of before the first intercept (needs get and update on the traffic-manager configmap)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !agents {
				return errors.New("give --agents to take the injected agents out; `tether helm uninstall` removes the traffic manager as well")
			}
			if inCluster {
				return removeAgentsInCluster(cmd, g)
			}
			// Each workload is patched once; the rollouts go on after.
			err := call(cmd, g, 2*time.Minute, func(ctx context.Context, c pb.DaemonClient) error {
				_, err := c.RemoveAgents(ctx, &pbm.RemoveAgentsRequest{})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Agents removed: the intercepted workloads roll back to their pod templates of before the first intercept.")
			return nil
		},
	}
	cmd.Flags().BoolVar(&agents, "agents", false, "remove the agents the traffic manager injected")
	cmd.Flags().BoolVar(&inCluster, "in-cluster", false, "act with the pod's service account on the API server, not through the traffic manager (the chart's pre-delete hook)")
	return cmd
}

// removeAgentsInCluster restores the workloads with the pod's service
// account: the chart's pre-delete hook, when the manager may be gone.
func removeAgentsInCluster(cmd *cobra.Command, g *globals) error {
	kc, err := kube.Client("")
	if err != nil {
		return err
	}
	if kc == nil {
		return errors.New("--in-cluster runs in a pod (the chart's pre-delete hook); elsewhere leave it out")
	}
	restored, err := inject.RemoveAll(cmd.Context(), kc, g.logger())
	for _, w := range restored {
		fmt.Fprintf(cmd.OutOrStdout(), "%s: agent removed, rolling back\n", w)
	}
	return err
}

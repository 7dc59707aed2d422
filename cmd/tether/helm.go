package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"helm.sh/helm/v3/pkg/cli/values"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/tether-dev/tether/kube/helm"
)

func newHelmCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "helm",
		Short: "Install, upgrade or uninstall the traffic manager in a cluster (Tether's Helm chart, built in)",
	}
	cmd.AddCommand(newHelmInstallCmd(g), newHelmUpgradeCmd(g), newHelmUninstallCmd(g))
	return cmd
}

// helmFlags are the flags every helm subcommand takes: the kubeconfig as
// kubectl loads it, the release's namespace and how long to wait.
type helmFlags struct {
	kube      *genericclioptions.ConfigFlags
	namespace string
	timeout   time.Duration
}

func addHelmFlags(cmd *cobra.Command) *helmFlags {
	h := &helmFlags{kube: genericclioptions.NewConfigFlags(true)}
	f := cmd.Flags()
	f.StringVar(h.kube.KubeConfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)")
	f.StringVar(h.kube.Context, "context", "", "kubeconfig context (default: the current one)")
	f.StringVarP(&h.namespace, "namespace", "n", helm.DefaultNamespace, "namespace of the traffic manager (manager.namespace); created when missing")
	f.DurationVar(&h.timeout, "timeout", helm.DefaultTimeout, "how long to wait for the traffic manager to become available")
	return h
}

func (h *helmFlags) options(cmd *cobra.Command, g *globals) helm.Options {
	log := g.logger().With("component", "helm")
	return helm.Options{
		Kube: h.kube, Namespace: h.namespace, Timeout: h.timeout,
		Out: cmd.OutOrStdout(), Progress: cmd.ErrOrStderr(),
		Log: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
	}
}

// addValuesFlags defines helm's value flags.
func addValuesFlags(cmd *cobra.Command) *values.Options {
	v := &values.Options{}
	f := cmd.Flags()
	f.StringArrayVar(&v.Values, "set", nil, "set a chart value, e.g. intercept.inactiveBlockTimeout=5m (repeatable; as helm's --set)")
	f.StringArrayVar(&v.StringValues, "set-string", nil, "set a chart value as a string (repeatable)")
	f.StringArrayVar(&v.JSONValues, "set-json", nil, "set a chart value as JSON (repeatable)")
	f.StringSliceVarP(&v.ValueFiles, "values", "f", nil, "chart values from a YAML file (repeatable)")
	return v
}

func newHelmInstallCmd(g *globals) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the traffic manager, wait until it is available and say how to connect",
		Args:  cobra.NoArgs,
	}
	h := addHelmFlags(cmd)
	v := addValuesFlags(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the rendered manifests instead (no cluster needed)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		vals, err := helm.Values(*v)
		if err != nil {
			return err
		}
		if dryRun {
			rel, err := helm.Render(h.namespace, vals)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), rel.Manifest)
			return err
		}
		return helm.Install(cmd.Context(), h.options(cmd, g), vals)
	}
	return cmd
}

func newHelmUpgradeCmd(g *globals) *cobra.Command {
	var reset bool
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade the traffic manager to this tether's chart, with new values over those given before",
		Args:  cobra.NoArgs,
	}
	h := addHelmFlags(cmd)
	v := addValuesFlags(cmd)
	cmd.Flags().BoolVar(&reset, "reset-values", false, "drop the values given before: the chart's defaults and this command's values only")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		vals, err := helm.Values(*v)
		if err != nil {
			return err
		}
		return helm.Upgrade(cmd.Context(), h.options(cmd, g), vals, reset)
	}
	return cmd
}

func newHelmUninstallCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Take the injected agents out (workloads roll back), then remove the traffic manager and its roles from the cluster",
		Args:  cobra.NoArgs,
	}
	h := addHelmFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return helm.Uninstall(cmd.Context(), h.options(cmd, g))
	}
	return cmd
}

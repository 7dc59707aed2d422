// Package helm installs, upgrades and uninstalls Tether's chart (package
// charts, embedded) with the Helm SDK, as `helm` would with charts/tether.
// It is a Kubernetes adapter: the manager's rules never import it.
package helm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"github.com/tether-dev/tether/charts"
	"github.com/tether-dev/tether/kube/inject"
)

// Defaults of the release.
const (
	DefaultNamespace = "tether"
	ReleaseName      = "tether"
	DefaultTimeout   = 5 * time.Minute
)

// progressEvery is how often a waiting install says what it waits for.
const progressEvery = 5 * time.Second

// Chart loads the embedded chart.
func Chart() (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(charts.Tether, "tether", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(charts.Tether, path)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(path, "tether/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the embedded chart: %w", err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("load the embedded chart: %w", err)
	}
	return ch, nil
}

// Values merges --values files and --set, --set-string, --set-json and
// --set-file values as helm does.
func Values(opts values.Options) (map[string]any, error) {
	vals, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	return vals, nil
}

// Render renders the chart for namespace with vals without a cluster
// (helm template): the release, its manifest and notes. The chart's schema
// checks vals.
func Render(namespace string, vals map[string]any) (*release.Release, error) {
	ch, err := Chart()
	if err != nil {
		return nil, err
	}
	cfg := &action.Configuration{Log: func(string, ...any) {}}
	in := action.NewInstall(cfg)
	in.ClientOnly, in.DryRun, in.Replace = true, true, true
	in.ReleaseName, in.Namespace = ReleaseName, namespace
	rel, err := in.Run(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("render the chart: %w", readable(err))
	}
	return rel, nil
}

// durationUnits marks the chart schema's duration pattern in an error.
const durationUnits = "(ns|us|µs|ms|s|m|h)"

// readable replaces the schema's duration pattern, in an error that
// quotes it, by what it means.
func readable(err error) error {
	lines := strings.Split(err.Error(), "\n")
	changed := false
	for i, l := range lines {
		if at := strings.Index(l, "does not match pattern"); at >= 0 && strings.Contains(l[at:], durationUnits) {
			lines[i], changed = l[:at]+"is not a positive duration such as 30s, 10m or 1h30m", true
		}
	}
	if !changed {
		return err
	}
	return errors.New(strings.Join(lines, "\n"))
}

// Options are what install, upgrade and uninstall share.
type Options struct {
	// Kube loads the kubeconfig as kubectl does (--kubeconfig, --context,
	// KUBECONFIG).
	Kube      *genericclioptions.ConfigFlags
	Namespace string
	Timeout   time.Duration
	// Out gets the notes and results; Progress the lines while it waits.
	Out, Progress io.Writer
	// Log gets Helm's debug lines; nil drops them.
	Log func(format string, args ...any)
}

func (o *Options) config() (*action.Configuration, error) {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	p := &progress{out: o.Progress, namespace: o.Namespace, timeout: o.Timeout, debug: o.Log, now: time.Now}
	// Objects without a namespace go to the release's, not the context's.
	o.Kube.Namespace = &o.Namespace
	cfg := &action.Configuration{}
	if err := cfg.Init(o.Kube, o.Namespace, "secret", p.log); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// Install installs the chart with vals into o.Namespace, creating the
// namespace when missing, and waits for the manager to become available,
// saying so every few seconds.
func Install(ctx context.Context, o Options, vals map[string]any) error {
	ch, err := Chart()
	if err != nil {
		return err
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace, in.CreateNamespace = ReleaseName, o.Namespace, true
	in.Wait, in.Timeout = true, o.Timeout
	rel, err := in.RunWithContext(ctx, ch, vals)
	if err != nil {
		if strings.Contains(err.Error(), "cannot re-use a name that is still in use") {
			return fmt.Errorf("tether is already installed in namespace %s: change it with `tether helm upgrade`, or remove it with `tether helm uninstall`", o.Namespace)
		}
		return o.waitError("install", readable(err))
	}
	fmt.Fprintf(o.Out, "Installed tether %s in namespace %s.\n\n%s", rel.Chart.AppVersion(), o.Namespace, rel.Info.Notes)
	return nil
}

// Upgrade upgrades the release in o.Namespace to the embedded chart with
// vals over the values given before, unless reset (then the chart's
// defaults and vals only), and waits as Install does.
func Upgrade(ctx context.Context, o Options, vals map[string]any, reset bool) error {
	ch, err := Chart()
	if err != nil {
		return err
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	up := action.NewUpgrade(cfg)
	up.Namespace, up.Wait, up.Timeout = o.Namespace, true, o.Timeout
	// The chart comes with the binary, so its new defaults apply; the
	// values given at install (subnets, say) stay.
	up.ResetThenReuseValues, up.ResetValues = !reset, reset
	rel, err := up.RunWithContext(ctx, ReleaseName, ch, vals)
	if errors.Is(err, driver.ErrNoDeployedReleases) || errors.Is(err, driver.ErrReleaseNotFound) {
		return fmt.Errorf("tether is not installed in namespace %s: install it with `tether helm install`", o.Namespace)
	}
	if err != nil {
		return o.waitError("upgrade", readable(err))
	}
	fmt.Fprintf(o.Out, "Upgraded tether to %s in namespace %s (revision %d).\n\n%s", rel.Chart.AppVersion(), o.Namespace, rel.Version, rel.Info.Notes)
	return nil
}

// Uninstall takes the injected agents out (the workloads roll back to
// their pods of before the first intercept), then removes the release
// from o.Namespace and waits until its objects are gone.
func Uninstall(ctx context.Context, o Options) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	rc, err := o.Kube.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	fmt.Fprintln(o.Progress, "Removing the injected agents: intercepted workloads roll back...")
	restored, err := inject.RemoveAll(ctx, kc, slog.New(slog.DiscardHandler))
	for _, w := range restored {
		fmt.Fprintf(o.Progress, "  %s: agent removed, rolling back\n", w)
	}
	if err != nil {
		return fmt.Errorf("the agents were not all removed, so the release stays (run `tether helm uninstall` again once the cause is fixed): %w", err)
	}
	un := action.NewUninstall(cfg)
	un.Wait, un.Timeout = true, o.Timeout
	// The chart's pre-delete hook would remove the agents again, in a
	// Job that needs the image to run.
	un.DisableHooks = true
	if _, err := un.Run(ReleaseName); err != nil {
		if errors.Is(err, driver.ErrReleaseNotFound) {
			return fmt.Errorf("tether is not installed in namespace %s: nothing to uninstall (give --namespace if it is elsewhere)", o.Namespace)
		}
		return fmt.Errorf("uninstall: %w", err)
	}
	fmt.Fprintf(o.Out, "Uninstalled tether from namespace %s (the namespace stays).\n", o.Namespace)
	return nil
}

// progress turns Helm's log into the user's progress lines: one when the
// wait begins, then what is not ready yet, at most every progressEvery.
// Everything goes to the debug log as well.
type progress struct {
	out       io.Writer
	namespace string
	timeout   time.Duration
	debug     func(format string, args ...any)
	now       func() time.Time

	mu   sync.Mutex // guards last: Helm may log from several goroutines
	last time.Time  // of the last "not ready" line
}

func (p *progress) log(format string, args ...any) {
	p.debug(format, args...)
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case strings.HasPrefix(msg, "beginning wait for") && strings.Contains(msg, "deleted"):
		fmt.Fprintf(p.out, "Waiting up to %s for the release's objects to be deleted...\n", p.timeout)
	case strings.HasPrefix(msg, "beginning wait for"):
		fmt.Fprintf(p.out, "Waiting up to %s for the traffic manager (deployment %s/traffic-manager) to become available...\n", p.timeout, p.namespace)
	case strings.Contains(msg, "is not ready"):
		if now := p.now(); now.Sub(p.last) >= progressEvery {
			p.last = now
			fmt.Fprintf(p.out, "  %s\n", strings.TrimSpace(msg))
		}
	}
}

// waitError explains a failed install or upgrade; a timeout says where to
// look.
func (o *Options) waitError(op string, err error) error {
	if strings.Contains(err.Error(), "context deadline exceeded") || strings.Contains(err.Error(), "timed out waiting") {
		return fmt.Errorf("%s: the traffic manager did not become available within %s (--timeout); see `kubectl -n %s describe deployment traffic-manager` and `kubectl -n %s logs deployment/traffic-manager`: %w",
			op, o.Timeout, o.Namespace, o.Namespace, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

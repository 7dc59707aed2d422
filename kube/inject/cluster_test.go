package inject_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"helm.sh/helm/v3/pkg/action"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/kube/helm"
	"github.com/tether-dev/tether/kube/inject"
	"github.com/tether-dev/tether/kube/internal/labtest"
	"github.com/tether-dev/tether/manager"
)

func TestMain(m *testing.M) {
	labtest.Main(m, "/tmp/tether-kubelab-kube-inject", "pause.tar", "testapp.tar", "tether.tar")
}

// The chart's manager injects the agent into a real Deployment and takes
// it out again: the webhook adds tether-agent with the Service's port
// name, the Service's endpoints move to the agent's port and requests
// still reach the app through it; RemoveAll, and then `tether helm
// uninstall`, leave the pod template as it was, with pods of the original
// ReplicaSet; so does plain `helm uninstall`, through the chart's
// pre-delete hook.
func TestInjectAndRemoveOnTheCluster(t *testing.T) {
	c, admin, _ := labtest.Cluster(t)
	ctx := context.Background()
	opts := installChart(t, c, admin)

	ns := labtest.Namespace(t, admin)
	web := startWeb(t, admin, ns)
	orig := web.Spec.Template
	origHash := podOf(t, admin, ns).Labels[appsv1.DefaultDeploymentUniqueLabelKey]

	w := manager.Workload{WorkloadRef: manager.WorkloadRef{Namespace: ns, Name: "web", Kind: inject.KindDeployment}}
	in := inject.New(admin, helm.DefaultNamespace, slog.New(slog.NewTextHandler(os.Stderr, nil)))

	// A Service that targets the port by number is refused before
	// anything changes, saying how to fix it.
	numeric := service("web-numeric", intstr.FromInt32(8080))
	if _, err := admin.CoreV1().Services(ns).Create(ctx, numeric, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := in.Check(ctx, w, []uint16{8080}); err == nil || !strings.Contains(err.Error(), "set targetPort: http in service web-numeric") {
		t.Fatalf("check with a numeric targetPort: %v", err)
	}
	if err := admin.CoreV1().Services(ns).Delete(ctx, numeric.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := in.Check(ctx, w, []uint16{8080}); err != nil {
		t.Fatalf("check: %v", err)
	}

	// Two intercepts at once: both patches are conditional, and the
	// loser finds the template marked.
	errc := make(chan error, 2)
	for range 2 {
		go func() { errc <- in.Inject(ctx, w, []uint16{8080}) }()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	injected := rolledOut(t, admin, ns)
	checkInjected(t, c, admin, ns)
	// Injecting the same ports again changes nothing: no new rollout.
	if err := in.Inject(ctx, w, []uint16{8080}); err != nil {
		t.Fatal(err)
	}
	if again := deployment(t, admin, ns); again.Generation != injected.Generation {
		t.Fatalf("a second Inject rolled out again: generation %d → %d", injected.Generation, again.Generation)
	}

	if err := in.RemoveAll(ctx); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, admin, ns, orig, origHash)

	// Plain helm uninstall: the chart's pre-delete hook takes the agents
	// out.
	if err := in.Inject(ctx, w, []uint16{8080}); err != nil {
		t.Fatal(err)
	}
	rolledOut(t, admin, ns)
	cfg := &action.Configuration{}
	if err := cfg.Init(opts.Kube, opts.Namespace, "secret", func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	un := action.NewUninstall(cfg)
	un.Wait, un.Timeout = true, 2*time.Minute
	if _, err := un.Run(helm.ReleaseName); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	checkRestored(t, admin, ns, orig, origHash)

	// tether helm uninstall takes them out itself before the release.
	opts = installChart(t, c, admin)
	if err := in.Inject(ctx, w, []uint16{8080}); err != nil {
		t.Fatal(err)
	}
	rolledOut(t, admin, ns)
	if err := helm.Uninstall(ctx, opts); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, admin, ns, orig, origHash)
}

// installChartUntilCleanup is installChart with `tether helm uninstall`
// when the test ends.
func installChartUntilCleanup(t *testing.T, c *kubelab.Cluster, admin kubernetes.Interface) {
	t.Helper()
	opts := installChart(t, c, admin)
	t.Cleanup(func() {
		if err := helm.Uninstall(context.Background(), opts); err != nil {
			t.Error(err)
		}
	})
}

// installChart installs the chart with the test cluster's image, and waits
// until its manager has patched the webhook's caBundle.
func installChart(t *testing.T, c *kubelab.Cluster, admin kubernetes.Interface) helm.Options {
	t.Helper()
	kubeconfig := c.Kubeconfig()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	var out bytes.Buffer
	opts := helm.Options{Kube: flags, Namespace: helm.DefaultNamespace, Out: &out, Progress: &out, Timeout: 2 * time.Minute}
	err := helm.Install(context.Background(), opts, map[string]any{
		"subnets": []any{kubelab.PodCIDR, kubelab.ServiceCIDR},
		"image":   map[string]any{"repository": "tether.local/tether", "tag": "dev", "pullPolicy": "Never"},
	})
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := c.Kubectl(context.Background(), "logs", "-n", helm.DefaultNamespace, "deployment/traffic-manager")
			t.Logf("manager's log:\n%s", logs)
			b, _ := os.ReadFile(filepath.Join(c.Dir, "logs", "kube-apiserver.log"))
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "webhook") || strings.Contains(l, "tether") {
					t.Logf("kube-apiserver: %s", l)
				}
			}
		}
	})
	labtest.Eventually(t, "the caBundle patched in", time.Minute, 250*time.Millisecond, func() error {
		mwc, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), inject.WebhookName(helm.DefaultNamespace), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(mwc.Webhooks[0].ClientConfig.CABundle) == 0 {
			return fmt.Errorf("no caBundle yet")
		}
		return nil
	})
	return opts
}

func service(name string, target intstr.IntOrString) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Port: 80, TargetPort: target, Protocol: corev1.ProtocolTCP}},
	}}
}

// startWeb runs the test app as Deployment web behind Service web, which
// targets its port by name.
func startWeb(t *testing.T, admin kubernetes.Interface, ns string) *appsv1.Deployment {
	t.Helper()
	d := webDeployment()
	ctx := context.Background()
	if _, err := admin.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Services(ns).Create(ctx, service("web", intstr.FromString("http")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return rolledOut(t, admin, ns)
}

// webDeployment runs the test app, its port named http.
func webDeployment() *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{
						Name: "app", Image: kubelab.TestAppImage, ImagePullPolicy: corev1.PullNever,
						Env:   []corev1.EnvVar{{Name: "PORT", Value: "8080"}},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
					}},
				},
			},
		},
	}
}

func deployment(t *testing.T, admin kubernetes.Interface, ns string) *appsv1.Deployment {
	t.Helper()
	d, err := admin.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// rolledOut waits until web's rollout is complete: its one pod is of the
// current template and ready, and no other pod is left.
func rolledOut(t *testing.T, admin kubernetes.Interface, ns string) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	labtest.Eventually(t, "deployment web rolled out", 2*time.Minute, 250*time.Millisecond, func() error {
		d = deployment(t, admin, ns)
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != 1 || s.AvailableReplicas != 1 || s.Replicas != 1 {
			return fmt.Errorf("status %+v", s)
		}
		pods, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		if len(pods.Items) != 1 {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		return nil
	})
	return d
}

func podOf(t *testing.T, admin kubernetes.Interface, ns string) *corev1.Pod {
	t.Helper()
	pods, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of web: %v %v", pods, err)
	}
	return &pods.Items[0]
}

func checkInjected(t *testing.T, c *kubelab.Cluster, admin kubernetes.Interface, ns string) {
	t.Helper()
	pod := podOf(t, admin, ns)
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"app", inject.ContainerName}) {
		t.Fatalf("containers %v, want app and %s", names, inject.ContainerName)
	}
	if p := pod.Spec.Containers[0].Ports[0]; p.Name != "tx-http" || p.ContainerPort != 8080 {
		t.Fatalf("app's port %+v, want tx-http on 8080", p)
	}
	if p := pod.Spec.Containers[1].Ports[0]; p.Name != "http" || p.ContainerPort != inject.FirstAgentPort {
		t.Fatalf("agent's port %+v, want http on %d", p, inject.FirstAgentPort)
	}
	// The Service targets the name: its endpoints are the agent's.
	labtest.Eventually(t, "service web's endpoints on the agent's port", 30*time.Second, 250*time.Millisecond, func() error {
		eps, err := admin.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err != nil {
			return err
		}
		for _, s := range eps.Items {
			for _, p := range s.Ports {
				if p.Port != nil && *p.Port == inject.FirstAgentPort && len(s.Endpoints) == 1 && s.Endpoints[0].TargetRef.Name == pod.Name {
					return nil
				}
			}
		}
		return fmt.Errorf("endpoint slices %+v", eps.Items)
	})
	// Through the Service, the agent forwards to the app. The endpoint
	// slice changes before kube-proxy has programmed it, so the first GETs
	// may still find the old pod's rules.
	labtest.Eventually(t, "a GET through the Service answered by the agent's pod", 30*time.Second, 500*time.Millisecond, func() error {
		out, err := c.Kubectl(context.Background(), "exec", "-n", ns, pod.Name, "-c", "app", "--", "/testapp", "get", "http://web."+ns+".svc.cluster.local/")
		if err != nil || !strings.Contains(string(out), "pod="+pod.Name) {
			return fmt.Errorf("GET through the agent: %v: %s", err, out)
		}
		return nil
	})
}

// checkRestored waits for the rollback and checks that web is as it was:
// its pod template equal to orig, without marks, its pod of the original
// ReplicaSet and without an agent.
func checkRestored(t *testing.T, admin kubernetes.Interface, ns string, orig corev1.PodTemplateSpec, origHash string) {
	t.Helper()
	d := rolledOut(t, admin, ns)
	if !apiequality.Semantic.DeepEqual(d.Spec.Template, orig) {
		t.Fatalf("pod template\n%+v\nwant\n%+v", d.Spec.Template, orig)
	}
	if _, ok := d.Labels[inject.LabelInjected]; ok {
		t.Fatalf("labels %v", d.Labels)
	}
	if _, ok := d.Annotations[inject.AnnotationRestore]; ok {
		t.Fatalf("annotations %v", d.Annotations)
	}
	pod := podOf(t, admin, ns)
	if h := pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; h != origHash || len(pod.Spec.Containers) != 1 {
		t.Fatalf("pod %s of template %s with %d containers; want one of %s with the app alone", pod.Name, h, len(pod.Spec.Containers), origHash)
	}
}

// A bare ReplicaSet does not roll out a changed template: its pods are
// replaced, with an agent and again without.
func TestInjectBareReplicaSetOnTheCluster(t *testing.T) {
	c, admin, _ := labtest.Cluster(t)
	ctx := context.Background()
	installChartUntilCleanup(t, c, admin)
	ns := labtest.Namespace(t, admin)
	d := webDeployment()
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Selector: d.Spec.Selector, Template: d.Spec.Template}}
	created, err := admin.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Services(ns).Create(ctx, service("web", intstr.FromString("http")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	containers := func(want int) *corev1.Pod {
		var pod *corev1.Pod
		labtest.Eventually(t, fmt.Sprintf("one ready pod with %d containers", want), time.Minute, 250*time.Millisecond, func() error {
			pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			if len(pods.Items) != 1 || len(pods.Items[0].Spec.Containers) != want || pods.Items[0].Status.Phase != corev1.PodRunning {
				return fmt.Errorf("%d pods", len(pods.Items))
			}
			pod = &pods.Items[0]
			return nil
		})
		return pod
	}
	before := containers(1)
	in := inject.New(admin, helm.DefaultNamespace, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	w := manager.Workload{WorkloadRef: manager.WorkloadRef{Namespace: ns, Name: "web", Kind: inject.KindReplicaSet}}
	if err := in.Inject(ctx, w, []uint16{8080}); err != nil {
		t.Fatal(err)
	}
	if after := containers(2); after.Name == before.Name || after.Spec.Containers[1].Name != inject.ContainerName {
		t.Fatalf("pod %s with %s, want a new pod with the agent", after.Name, after.Spec.Containers[1].Name)
	}
	if err := in.RemoveAll(ctx); err != nil {
		t.Fatal(err)
	}
	containers(1)
	got, err := admin.AppsV1().ReplicaSets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(got.Spec.Template, created.Spec.Template) {
		t.Fatalf("pod template\n%+v\nwant\n%+v", got.Spec.Template, created.Spec.Template)
	}
}

// A pod of an intercepted workload created while the manager, and with it
// the webhook, is down starts without its agent; the manager, back, finds
// it and evicts it, and its replacement gets the agent, which connects.
// With a PodDisruptionBudget that refuses the eviction, the Deployment is
// restarted instead. Either way one event on the Deployment says so, and
// RemoveAll leaves its pod template as before the first intercept.
func TestRepairAfterManagerDownOnTheCluster(t *testing.T) {
	c, admin, _ := labtest.Cluster(t)
	ctx := context.Background()
	installChartUntilCleanup(t, c, admin)
	ns := labtest.Namespace(t, admin)
	web := startWeb(t, admin, ns)
	orig := web.Spec.Template
	origHash := podOf(t, admin, ns).Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	in := inject.New(admin, helm.DefaultNamespace, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	w := manager.Workload{WorkloadRef: manager.WorkloadRef{Namespace: ns, Name: "web", Kind: inject.KindDeployment}}
	if err := in.Inject(ctx, w, []uint16{8080}); err != nil {
		t.Fatal(err)
	}
	marked := rolledOut(t, admin, ns)
	checkInjected(t, c, admin, ns)

	// Evicted: only that pod is replaced, the template stays.
	bare := podWithoutAgent(t, admin, ns)
	start := time.Now()
	repaired := withAgent(t, c, admin, ns, bare)
	t.Logf("pod %s without its agent replaced by %s with it in %s", bare, repaired.Name, time.Since(start).Round(100*time.Millisecond))
	checkInjected(t, c, admin, ns)
	if d := deployment(t, admin, ns); d.Generation != marked.Generation || !apiequality.Semantic.DeepEqual(d.Spec.Template, marked.Spec.Template) {
		t.Fatalf("the eviction changed the Deployment: generation %d → %d, template\n%+v", marked.Generation, d.Generation, d.Spec.Template)
	}
	repairEvent(t, admin, ns, "evicted "+bare)

	// A PodDisruptionBudget refuses to evict web's one pod: a rollout
	// restart, whose surge starts the new pod before the old one stops.
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: policyv1.PodDisruptionBudgetSpec{
		MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	if _, err := admin.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bare = podWithoutAgent(t, admin, ns)
	start = time.Now()
	repaired = withAgent(t, c, admin, ns, bare)
	t.Logf("pod %s without its agent, kept by a PodDisruptionBudget, replaced by %s with it through a rollout restart in %s", bare, repaired.Name, time.Since(start).Round(100*time.Millisecond))
	checkInjected(t, c, admin, ns)
	if d := deployment(t, admin, ns); d.Spec.Template.Annotations[inject.AnnotationRestartedAt] == "" {
		t.Fatalf("no rollout restart: template annotations %v", d.Spec.Template.Annotations)
	}
	repairEvent(t, admin, ns, "rollout restart: "+bare)

	if err := in.RemoveAll(ctx); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, admin, ns, orig, origHash)
}

// podWithoutAgent stops the manager, deletes web's pod and waits for its
// ReplicaSet to replace it: without an agent, the webhook being down. It
// starts the manager again and returns the pod's name.
func podWithoutAgent(t *testing.T, admin kubernetes.Interface, ns string) string {
	t.Helper()
	ctx := context.Background()
	scaleManager(t, admin, 0)
	old := podOf(t, admin, ns)
	if err := admin.CoreV1().Pods(ns).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var bare *corev1.Pod
	labtest.Eventually(t, "web's pod replaced while the webhook is down", time.Minute, 250*time.Millisecond, func() error {
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		if len(pods.Items) != 1 || pods.Items[0].Name == old.Name || !ready(&pods.Items[0]) {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		bare = &pods.Items[0]
		return nil
	})
	if len(bare.Spec.Containers) != 1 || bare.Labels[inject.LabelAgent] != "enabled" {
		t.Fatalf("pod %s created while the webhook was down has %d containers and labels %v; want the app alone, labelled for the agent", bare.Name, len(bare.Spec.Containers), bare.Labels)
	}
	scaleManager(t, admin, 1)
	return bare.Name
}

// scaleManager scales the manager's Deployment to n and waits for its pods
// to be n and, with n 1, ready.
func scaleManager(t *testing.T, admin kubernetes.Interface, n int32) {
	t.Helper()
	ctx := context.Background()
	deps := admin.AppsV1().Deployments(helm.DefaultNamespace)
	scale, err := deps.GetScale(ctx, "traffic-manager", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = n
	if _, err := deps.UpdateScale(ctx, "traffic-manager", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := deps.Get(ctx, "traffic-manager", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sel := metav1.FormatLabelSelector(d.Spec.Selector)
	labtest.Eventually(t, fmt.Sprintf("the manager scaled to %d", n), 2*time.Minute, 250*time.Millisecond, func() error {
		pods, err := admin.CoreV1().Pods(helm.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return err
		}
		if len(pods.Items) != int(n) {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		for _, p := range pods.Items {
			if !ready(&p) {
				return fmt.Errorf("pod %s not ready", p.Name)
			}
		}
		return nil
	})
}

func ready(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// withAgent waits until web's one pod is a new one, other than bare, ready
// with its agent, and the agent watches the manager's routes.
func withAgent(t *testing.T, c *kubelab.Cluster, admin kubernetes.Interface, ns, bare string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	var pod *corev1.Pod
	labtest.Eventually(t, "web's pods with their agent again", 2*time.Minute, 250*time.Millisecond, func() error {
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		if len(pods.Items) != 1 {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		p := &pods.Items[0]
		if p.Name == bare || !ready(p) || len(p.Spec.Containers) != 2 || p.Spec.Containers[1].Name != inject.ContainerName {
			return fmt.Errorf("pod %s: ready %v, %d containers", p.Name, ready(p), len(p.Spec.Containers))
		}
		pod = p
		return nil
	})
	rolledOut(t, admin, ns)
	// One repair by the manager that came back: its log says so once.
	logs, err := c.Kubectl(ctx, "logs", "-n", helm.DefaultNamespace, "deployment/traffic-manager")
	if err != nil {
		t.Fatal(err)
	}
	var repairs []string
	for _, l := range strings.Split(string(logs), "\n") {
		if strings.Contains(l, "agent repair") || strings.Contains(l, "webhook reachable") {
			t.Logf("manager: %s", l)
		}
		if strings.Contains(l, "msg=\"agent repair") && strings.Contains(l, "workload="+ns+"/web ") {
			repairs = append(repairs, l)
		}
	}
	if len(repairs) != 1 {
		t.Fatalf("the manager repaired %d times, want once:\n%s", len(repairs), strings.Join(repairs, "\n"))
	}
	labtest.Eventually(t, "the repaired pod's agent connected to the manager", time.Minute, 500*time.Millisecond, func() error {
		out, err := c.Kubectl(ctx, "logs", "-n", ns, pod.Name, "-c", inject.ContainerName)
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), "route stream from the manager is up") {
			return fmt.Errorf("agent's log:\n%s", out)
		}
		return nil
	})
	return pod
}

// repairEvent waits for the event on Deployment web that names the repair.
func repairEvent(t *testing.T, admin kubernetes.Interface, ns, want string) {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": inject.KindDeployment, "involvedObject.name": "web", "reason": inject.ReasonAgentRepaired}.AsSelector().String()
	labtest.Eventually(t, "the repair's event on web", 30*time.Second, 250*time.Millisecond, func() error {
		evs, err := admin.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return err
		}
		var msgs []string
		for _, e := range evs.Items {
			if strings.Contains(e.Message, want) {
				t.Logf("event %s %s: %s", e.Type, e.Reason, e.Message)
				return nil
			}
			msgs = append(msgs, e.Message)
		}
		return fmt.Errorf("events %q, none with %q", msgs, want)
	})
}

// A StatefulSet starts no pod before it stops one: while a
// PodDisruptionBudget refuses to evict its pod without an agent, Repair
// says so (a Warning event) and retries, and evicts it once the budget
// allows. Repair runs here in the test, against the real cluster without
// the chart (no webhook: every pod lacks its agent), and its goroutines
// end with its context.
func TestRepairStatefulSetOnTheCluster(t *testing.T) {
	_, admin, _ := labtest.Cluster(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		// The admin client's idle keep-alive connections.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"), goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
	ctx := context.Background()
	ns := labtest.Namespace(t, admin)
	d := webDeployment()
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{Replicas: d.Spec.Replicas, Selector: d.Spec.Selector, Template: d.Spec.Template}}
	created, err := admin.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: policyv1.PodDisruptionBudgetSpec{
		MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: d.Spec.Selector}}
	if _, err := admin.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	in := inject.New(admin, helm.DefaultNamespace, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	w := manager.Workload{WorkloadRef: manager.WorkloadRef{Namespace: ns, Name: "web", Kind: inject.KindStatefulSet}}
	if err := in.Inject(ctx, w, []uint16{8080}); err != nil {
		t.Fatal(err)
	}
	// The marked template's pod, ready and without its agent.
	var marked *corev1.Pod
	labtest.Eventually(t, "web-0 of the marked template, ready", 2*time.Minute, 250*time.Millisecond, func() error {
		p, err := admin.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Labels[inject.LabelAgent] != "enabled" || !ready(p) {
			return fmt.Errorf("labels %v, ready %v", p.Labels, ready(p))
		}
		marked = p
		return nil
	})

	rctx, stop := context.WithCancel(ctx)
	reachable := make(chan struct{})
	close(reachable)
	done := make(chan error, 1)
	go func() { done <- in.Repair(rctx, reachable) }()
	stopped := false
	stopRepair := func() {
		if !stopped {
			stopped = true
			stop()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	defer stopRepair()

	events := func(typ, reason string) []string {
		sel := fields.Set{"involvedObject.kind": inject.KindStatefulSet, "involvedObject.name": "web", "reason": reason, "type": typ}.AsSelector().String()
		evs, err := admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		for _, e := range evs.Items {
			msgs = append(msgs, e.Message)
		}
		return msgs
	}
	labtest.Eventually(t, "a Warning event: the budget refuses", 30*time.Second, 250*time.Millisecond, func() error {
		if msgs := events(corev1.EventTypeWarning, inject.ReasonRepairBlocked); len(msgs) == 0 {
			return errors.New("none")
		}
		return nil
	})
	t.Logf("blocked: %q", events(corev1.EventTypeWarning, inject.ReasonRepairBlocked))
	if p, err := admin.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{}); err != nil || p.UID != marked.UID || p.DeletionTimestamp != nil {
		t.Fatalf("web-0 evicted despite its PodDisruptionBudget: %v", err)
	}

	// The budget gone, the retry evicts the pod: the StatefulSet makes a
	// new web-0.
	if err := admin.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	labtest.Eventually(t, "web-0 evicted and made again", time.Minute, 250*time.Millisecond, func() error {
		p, err := admin.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.UID == marked.UID {
			return fmt.Errorf("web-0 is still %s", p.UID)
		}
		return nil
	})
	labtest.Eventually(t, "the repair's event", 30*time.Second, 250*time.Millisecond, func() error {
		for _, m := range events(corev1.EventTypeNormal, inject.ReasonAgentRepaired) {
			if strings.Contains(m, "evicted web-0") {
				return nil
			}
		}
		return errors.New("none")
	})
	stopRepair()

	// The StatefulSet's template back as it was: Repair added nothing.
	if err := in.RemoveAll(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := admin.AppsV1().StatefulSets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(got.Spec.Template, created.Spec.Template) {
		t.Fatalf("pod template\n%+v\nwant\n%+v", got.Spec.Template, created.Spec.Template)
	}
}

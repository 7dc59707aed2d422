package inject_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// Through the Service, the agent forwards to the app.
	out, err := c.Kubectl(context.Background(), "exec", "-n", ns, pod.Name, "-c", "app", "--", "/testapp", "get", "http://web."+ns+".svc.cluster.local/")
	if err != nil || !strings.Contains(string(out), "pod="+pod.Name) {
		t.Fatalf("GET through the agent: %v: %s", err, out)
	}
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
	opts := installChart(t, c, admin)
	t.Cleanup(func() {
		if err := helm.Uninstall(context.Background(), opts); err != nil {
			t.Error(err)
		}
	})
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

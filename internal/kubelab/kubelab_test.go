package kubelab

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// One cluster per test process, shared by the tests; each test works in a
// namespace of its own.
var (
	cluster    *Cluster
	skipReason string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	bins := envOr("KUBELAB_BINS", "../../bin/kube")
	images := envOr("KUBELAB_IMAGES", "../../bin/image")
	tars := []string{filepath.Join(images, "pause.tar"), filepath.Join(images, "testapp.tar"), filepath.Join(images, "tether.tar")}
	switch {
	case os.Geteuid() != 0:
		skipReason = "the test cluster needs root"
	case testing.Short():
		skipReason = "the test cluster does not run with -short"
	case len(MissingBinaries(bins)) > 0:
		skipReason = fmt.Sprintf("the test cluster's binaries (%s) are missing in %s: run make kube-bins (make test does it as root)",
			strings.Join(MissingBinaries(bins), ", "), bins)
	default:
		for _, t := range tars {
			if _, err := os.Stat(t); err != nil {
				skipReason = fmt.Sprintf("the test cluster's image %s is missing: run make image (make test does it as root)", t)
			}
		}
	}
	if skipReason != "" {
		return m.Run()
	}
	dir := envOr("KUBELAB_TEST_DIR", "/tmp/tether-kubelab-test")
	// Held from the first snapshot to the last, so that another package's
	// API server (internal/apitest) is not taken for a leftover.
	lockCtx, lockCancel := context.WithTimeout(context.Background(), 20*time.Minute)
	unlock, err := LockMachine(lockCtx)
	lockCancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer unlock()
	before := snapshotMachine(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := Up(ctx, Options{Dir: dir, Bins: bins, Images: tars, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cluster = c
	// An interrupted run tears down before it exits; one killed harder is
	// cleaned by the next Up in the same directory.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "kubelab: interrupted; tearing down")
		_ = c.Down()
		os.Exit(1)
	}()
	code := m.Run()
	if code != 0 {
		c.dumpLogs()
	}
	signal.Stop(sigs)
	start := time.Now()
	if err := c.Down(); err != nil {
		fmt.Fprintln(os.Stderr, "kubelab: teardown:", err)
		code = 1
	}
	// The teardown check: nothing the cluster made may be left.
	if left := leftovers(before, snapshotMachine(dir)); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "--- FAIL: teardown left behind:\n  %s\n", strings.Join(left, "\n  "))
		code = 1
	} else {
		fmt.Fprintf(os.Stderr, "--- PASS: teardown in %s left no process, mount, namespace, link, address, cgroup, iptables/nft rule or file behind\n",
			time.Since(start).Round(100*time.Millisecond))
	}
	return code
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func requireCluster(t *testing.T) *Cluster {
	t.Helper()
	if cluster == nil {
		t.Skip(skipReason)
	}
	return cluster
}

// newNamespace creates a Kubernetes namespace for the test, named after
// it, and waits for its default service account (pods need it).
func newNamespace(t *testing.T, c *Cluster) string {
	t.Helper()
	name := "t-" + strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	kubectl(t, c, "create", "namespace", name)
	t.Cleanup(func() { _, _ = c.Kubectl(context.Background(), "delete", "namespace", name, "--wait=false") })
	eventually(t, "service account default in "+name, time.Minute, func() error {
		_, err := c.Kubectl(context.Background(), "get", "serviceaccount", "default", "-n", name)
		return err
	})
	return name
}

func kubectl(t *testing.T, c *Cluster, args ...string) string {
	t.Helper()
	out, err := c.Kubectl(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func apply(t *testing.T, c *Cluster, yaml string) {
	t.Helper()
	if err := c.Apply(context.Background(), yaml); err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, limit time.Duration, f func() error) {
	t.Helper()
	if err := poll(context.Background(), what, limit, f); err != nil {
		t.Fatal(err)
	}
}

// deployWeb runs the test app as Deployment web behind Service web (port
// 80) and a single client pod, and waits until they run.
func deployWeb(t *testing.T, c *Cluster, ns string) {
	t.Helper()
	apply(t, c, fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: %[2]s
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
        env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: %[1]s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: %[2]s
    imagePullPolicy: Never
`, ns, TestAppImage))
	kubectl(t, c, "rollout", "status", "deployment/web", "-n", ns, "--timeout=120s")
	kubectl(t, c, "wait", "pod/client", "-n", ns, "--for=condition=Ready", "--timeout=120s")
}

func TestDeploymentRuns(t *testing.T) {
	c := requireCluster(t)
	ns := newNamespace(t, c)
	deployWeb(t, c, ns)
	phases := kubectl(t, c, "get", "pods", "-n", ns, "-l", "app=web", "-o", "jsonpath={.items[*].status.phase}")
	if got := strings.Fields(phases); len(got) != 2 || got[0] != "Running" || got[1] != "Running" {
		t.Fatalf("web pods' phases = %q, want two Running", phases)
	}
	ips := kubectl(t, c, "get", "pods", "-n", ns, "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}")
	for _, ip := range strings.Fields(ips) {
		if !strings.HasPrefix(ip, "198.18.128.") {
			t.Errorf("pod IP %s is not in the pod range %s", ip, PodCIDR)
		}
	}
}

func TestServiceFromAnotherPod(t *testing.T) {
	c := requireCluster(t)
	ns := newNamespace(t, c)
	deployWeb(t, c, ns)
	clusterIP := strings.TrimSpace(kubectl(t, c, "get", "service", "web", "-n", ns, "-o", "jsonpath={.spec.clusterIP}"))
	if !strings.HasPrefix(clusterIP, "198.18.160.") {
		t.Fatalf("ClusterIP %s is not in the service range %s", clusterIP, ServiceCIDR)
	}
	name := "web." + ns + ".svc.cluster.local"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"ClusterIP answers", []string{"get", "http://" + clusterIP + "/"}, "pod=web-"},
		{"cluster DNS resolves the service", []string{"lookup", name}, clusterIP},
		{"service name answers", []string{"get", "http://" + name + "/"}, "pod=web-"},
		{"short name answers through the search path", []string{"get", "http://web/"}, "pod=web-"},
		{"kubernetes service resolves to its ClusterIP", []string{"lookup", "kubernetes.default.svc.cluster.local"}, APIService},
		// In-cluster API access, as the traffic manager will use it: the
		// service account's token and CA, through the kubernetes service.
		// Discovery is refused to anonymous requests, so an answer means
		// the token was accepted.
		{"API server answers in-cluster clients", []string{"get", "https://kubernetes.default.svc/api"}, "APIVersions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out []byte
			eventually(t, tt.name, 30*time.Second, func() error {
				var err error
				out, err = c.Kubectl(context.Background(), append([]string{"exec", "-n", ns, "client", "--", "/testapp"}, tt.args...)...)
				return err
			})
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("testapp %s printed %q, want %q in it", strings.Join(tt.args, " "), out, tt.want)
			}
		})
	}
}

func TestPortForwardFromLaptop(t *testing.T) {
	c := requireCluster(t)
	ns := newNamespace(t, c)
	deployWeb(t, c, ns)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pf := c.LaptopCommand(ctx, c.KubectlPath(), "--kubeconfig", c.UserKubeconfig("admin", true),
		"port-forward", "-n", ns, "deployment/web", "18080:8080")
	stdout, err := pf.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	pf.Stderr = &stderr
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = pf.Wait() }()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Forwarding from 127.0.0.1:18080") {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("kubectl port-forward exited: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("kubectl port-forward not forwarding after 30s: %s", stderr.String())
	}
	out, err := c.LaptopCommand(ctx, "curl", "-sS", "-m", "10", "http://127.0.0.1:18080/").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pod=web-") {
		t.Fatalf("curl through the port-forward in the laptop namespace: %v: %s", err, out)
	}

	// The laptop reaches the API server, but the pods and services only
	// through a tunnel.
	podIP := strings.Fields(kubectl(t, c, "get", "pods", "-n", ns, "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"))[0]
	clusterIP := kubectl(t, c, "get", "service", "web", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
	for _, url := range []string{"http://" + podIP + ":8080/", "http://" + clusterIP + "/"} {
		if out, err := c.LaptopCommand(ctx, "curl", "-sS", "-m", "2", url).CombinedOutput(); err == nil {
			t.Errorf("the laptop namespace reached %s: %s", url, out)
		}
	}
}

// The node (the cluster's network namespace) reaches a Service's ClusterIP,
// as tests that call a workload from inside the cluster do.
func TestServiceFromNode(t *testing.T) {
	c := requireCluster(t)
	ns := newNamespace(t, c)
	deployWeb(t, c, ns)
	clusterIP := strings.TrimSpace(kubectl(t, c, "get", "service", "web", "-n", ns, "-o", "jsonpath={.spec.clusterIP}"))
	out, err := exec.Command("ip", "netns", "exec", ClusterNetns, "curl", "-sS", "-m", "5", "http://"+clusterIP+"/").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pod=web-") {
		t.Fatalf("curl %s from the node: %v: %s", clusterIP, err, out)
	}
}

// Every laptop reaches the API server with the laptop kubeconfigs, and no
// pod.
func TestEveryLaptopReachesOnlyTheAPIServer(t *testing.T) {
	c := requireCluster(t)
	ns := newNamespace(t, c)
	deployWeb(t, c, ns)
	podIP := strings.Fields(kubectl(t, c, "get", "pods", "-n", ns, "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"))[0]
	for _, l := range Laptops {
		t.Run(l.Netns, func(t *testing.T) {
			ctx := context.Background()
			out, err := l.Command(ctx, c.KubectlPath(), "--kubeconfig", c.UserKubeconfig("admin", true), "get", "--raw", "/readyz").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Fatalf("the API server from %s: %v: %s", l.Netns, err, out)
			}
			// Even with a route of its own the laptop does not get through.
			if out, err := l.Command(ctx, "ip", "route", "add", PodCIDR, "via", l.GW).CombinedOutput(); err != nil {
				t.Fatalf("route: %v: %s", err, out)
			}
			defer l.Command(ctx, "ip", "route", "del", PodCIDR).Run()
			if out, err := l.Command(ctx, "curl", "-sS", "-m", "2", "http://"+podIP+":8080/").CombinedOutput(); err == nil {
				t.Errorf("%s reached pod %s: %s", l.Netns, podIP, out)
			}
		})
	}
}

func TestRBACEnforced(t *testing.T) {
	c := requireCluster(t)
	tests := []struct {
		name, user string
	}{
		{"token user", "alice"},
		{"client-certificate user", "carol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newNamespace(t, c)
			_, err := c.KubectlAs(context.Background(), tt.user, "get", "configmaps", "-n", ns)
			if err == nil || !strings.Contains(err.Error(), "forbidden") {
				t.Fatalf("%s listed configmaps in %s without a role: err = %v", tt.user, ns, err)
			}
			if !strings.Contains(err.Error(), `User "`+tt.user+`"`) {
				t.Errorf("the refusal does not name user %s: %v", tt.user, err)
			}
			apply(t, c, fmt.Sprintf(`
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-configmaps, namespace: %[1]s}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-configmaps, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-configmaps}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: %[2]s}
`, ns, tt.user))
			eventually(t, tt.user+" allowed by the role", 30*time.Second, func() error {
				_, err := c.KubectlAs(context.Background(), tt.user, "get", "configmaps", "-n", ns)
				return err
			})
			if _, err := c.KubectlAs(context.Background(), tt.user, "delete", "configmap", "kube-root-ca.crt", "-n", ns); err == nil ||
				!strings.Contains(err.Error(), "forbidden") {
				t.Errorf("%s deleted a configmap with a read-only role: err = %v", tt.user, err)
			}
		})
	}
}

// The next step runs Tether on this cluster: the tether image must run as
// a Deployment.
func TestTetherImageRunsAsDeployment(t *testing.T) {
	c := requireCluster(t)
	ns := newNamespace(t, c)
	apply(t, c, fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: traffic-manager, namespace: %s}
spec:
  selector: {matchLabels: {app: traffic-manager}}
  template:
    metadata: {labels: {app: traffic-manager}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: manager
        image: %s
        imagePullPolicy: Never
        # Without a token file the manager listens on loopback only, and
        # kubelet probes the pod IP. Its service account has no RBAC, so
        # it cannot discover the subnets: it is given them.
        args: [manager, --subnet, %s, --subnet, %s, --insecure-listen-any, --discover-subnets=false]
        ports: [{containerPort: 8081}]
        readinessProbe: {tcpSocket: {port: 8081}, periodSeconds: 1}
`, ns, TetherImage, PodCIDR, ServiceCIDR))
	kubectl(t, c, "rollout", "status", "deployment/traffic-manager", "-n", ns, "--timeout=120s")
	eventually(t, "the manager's start line", 30*time.Second, func() error {
		logs, err := c.Kubectl(context.Background(), "logs", "-n", ns, "deployment/traffic-manager")
		if err != nil {
			return err
		}
		if !strings.Contains(string(logs), "traffic manager started") {
			return fmt.Errorf("logs: %s", logs)
		}
		return nil
	})
}

// TestKubectlFromHost runs kubectl as a person would after make kube-up:
// from the host with the admin kubeconfig in KUBECONFIG.
func TestKubectlFromHost(t *testing.T) {
	c := requireCluster(t)
	cmd := exec.Command(c.KubectlPath(), "version", "-o", "json")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"gitVersion": "v1.37.2"`) {
		t.Fatalf("kubectl version: %v: %s", err, out)
	}
}

// The namespaces and the host veth have fixed names, so a second cluster
// from another directory must neither start nor tear the running one down.
func TestOtherDirectoryLeavesTheClusterAlone(t *testing.T) {
	c := requireCluster(t)
	other := t.TempDir()
	tests := []struct {
		name string
		run  func() error
	}{
		{"Up", func() error {
			_, err := Up(context.Background(), Options{Dir: other, Bins: c.Bins})
			return err
		}},
		{"Down", func() error { return Down(other) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil || !strings.Contains(err.Error(), "make kube-down") {
				t.Fatalf("%s from %s: err = %v, want a refusal naming make kube-down", tt.name, other, err)
			}
			kubectl(t, c, "get", "node", NodeName)
		})
	}
}

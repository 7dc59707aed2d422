package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	osexec "os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/internal/kubestage"
	"github.com/tether-dev/tether/internal/netlab"
	"github.com/tether-dev/tether/internal/story"
	"github.com/tether-dev/tether/internal/testlog"
	"github.com/tether-dev/tether/kube/internal/labtest"
	managerpb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// devPort is where each laptop's own version of web listens.
const devPort = 7000

// serveLaptop answers on the laptop's loopback at devPort with "hello from
// USER's laptop".
func (l *laptop) serveLaptop() {
	l.k.t.Helper()
	ln, err := l.k.lab.Listen(l.netns, "tcp", fmt.Sprintf("127.0.0.1:%d", devPort))
	if err != nil {
		l.k.t.Fatal(err)
	}
	l.k.t.Cleanup(netlab.ServeHTTP(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s's laptop\n", l.user)
	})))
}

// intercept intercepts ns/web's port for the x-user header value filter.
func (l *laptop) intercept(name, ns, filter string) (string, error) {
	return l.try("intercept", name, "--workload", ns+"/"+kubestage.Web, "--port", fmt.Sprint(kubestage.WebPort),
		"--to", fmt.Sprint(devPort), "--http-header", "x-user="+filter)
}

// webURL is ns/web's ClusterIP URL.
func (k *cluster) webURL(ns string) string {
	k.t.Helper()
	ip, err := kubestage.ClusterIP(context.Background(), k.admin, ns, kubestage.Web)
	if err != nil {
		k.t.Fatal(err)
	}
	return fmt.Sprintf("http://%s:%d/", ip, kubestage.WebPort)
}

// expect waits until a request from the cluster's network with each x-user
// value gets its answer; "app" stands for web's own pods.
func (k *cluster) expect(url string, want map[string]string, limit time.Duration) {
	k.t.Helper()
	labtest.Eventually(k.t, "requests routed", limit, 500*time.Millisecond, func() error {
		for user, body := range want {
			got := kubestage.AppAnswer(k.inCluster(url, user))
			if body == "app" {
				body = "hello from the app"
			}
			if got != body {
				return fmt.Errorf("x-user %q got %q, want %q", user, got, body)
			}
		}
		return nil
	})
}

// Two laptops connect through their kubeconfigs, one a token user, one a
// client-certificate user, and reach a Service by its ClusterIP: no route
// to the cluster but the API server's.
func TestConnectThroughPortForward(t *testing.T) {
	needForward(t)
	k := setUp(t)
	ns := k.web(1)
	url := k.webURL(ns)
	for i, user := range []string{"alice", "carol"} { // token, client certificate
		l := k.laptop(i, user)
		l.connect()
		if got := l.curl(url, ""); !strings.HasPrefix(got, "pod=web-") {
			t.Errorf("%s's curl %s: %q", user, url, got)
		}
	}
}

// After connect --namespace, a Service answers by NAME.NAMESPACE and by its
// short name, through the cluster's DNS, on networks the manager
// discovered. The laptop's namespace has no resolver configuration of its
// own, so the test asks the daemon's DNS server (status "dns") down the
// search list (status "dns_search") as the OS resolver would, with dig,
// and curl connects to the name at the address found.
func TestServiceByName(t *testing.T) {
	needForward(t)
	needDiscover(t)
	if _, err := osexec.LookPath("dig"); err != nil {
		t.Skip("dig not installed")
	}
	k := setUp(t)
	ns := k.web(1)
	ip, err := kubestage.ClusterIP(context.Background(), k.admin, ns, kubestage.Web)
	if err != nil {
		t.Fatal(err)
	}
	l := k.laptop(0, "alice")
	l.connect("--namespace", ns)
	st := l.status()
	server, _ := st["dns"].(string)
	server = strings.TrimSuffix(server, ":53")
	var search []string
	for _, d := range st["dns_search"].([]any) {
		search = append(search, d.(string))
	}
	if len(search) == 0 || search[0] != ns+".svc.cluster.local" {
		t.Fatalf("search domains %v, want %s.svc.cluster.local first", search, ns)
	}
	for _, name := range []string{"web." + ns, "web"} {
		found := ""
		for _, domain := range search {
			out, err := l.k.lab.Run(context.Background(), l.netns, "dig", "+short", "+time=3", "+tries=1", "@"+server, name+"."+domain)
			if a := strings.TrimSpace(out); err == nil && a != "" {
				found = a
				break
			}
		}
		if found != ip {
			t.Errorf("%s resolves to %q through the daemon's DNS %s, want web's ClusterIP %s", name, found, server, ip)
			continue
		}
		url := fmt.Sprintf("http://%s:%d/", name, kubestage.WebPort)
		out, err := l.k.lab.Run(context.Background(), l.netns, "curl", "-sS", "--max-time", "5",
			"--resolve", fmt.Sprintf("%s:%d:%s", name, kubestage.WebPort, found), url)
		if err != nil || !strings.HasPrefix(out, "pod=web-") {
			t.Errorf("curl %s: %v: %s", url, err, out)
		}
	}
}

// podShape is what an intercept may change in a pod and uninstall must
// restore: the containers with their images, ports and args.
func podShape(p corev1.PodSpec) string {
	type c struct {
		Name, Image string
		Args        []string
		Ports       []corev1.ContainerPort
	}
	var cs []c
	for _, x := range p.Containers {
		cs = append(cs, c{x.Name, x.Image, x.Args, x.Ports})
	}
	b, _ := json.Marshal(struct {
		Containers []c
		Init       int
		Volumes    int
	}{cs, len(p.InitContainers), len(p.Volumes)})
	return string(b)
}

// webPods are the shapes of ns/web's pods (and their count), once the
// rollout is done.
func (k *cluster) webPods(ns string) []string {
	k.t.Helper()
	ctx := context.Background()
	if err := kubestage.WaitRolledOut(ctx, k.admin, ns, kubestage.Web, 2*time.Minute); err != nil {
		k.t.Fatal(err)
	}
	var shapes []string
	labtest.Eventually(k.t, "only the rollout's pods", time.Minute, 500*time.Millisecond, func() error {
		pods, err := k.admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + kubestage.Web})
		if err != nil {
			return err
		}
		shapes = shapes[:0]
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				return fmt.Errorf("pod %s terminating", p.Name)
			}
			shapes = append(shapes, podShape(p.Spec))
		}
		return nil
	})
	return shapes
}

// An intercept of a real Deployment injects the agent into its pods (the
// webhook, on the manager's rollout), lists the workload with its intercept,
// routes the owner's requests to the laptop and the others to the app; and
// `tether helm uninstall` leaves the pods as they were before.
func TestAgentInjectedAndRemoved(t *testing.T) {
	needForward(t)
	needWorkloads(t)
	needInject(t)
	k := setUp(t)
	ns := k.web(2)
	before := k.webPods(ns)
	alice := k.laptop(0, "alice")
	alice.serveLaptop()
	alice.connect()
	k.injectedAndRemoved(ns, before, alice)
}

// injectedAndRemoved checks, for alice connected, that her intercept of
// ns/web injects the agent and routes her requests, and that uninstall
// leaves web's pods as before.
func (k *cluster) injectedAndRemoved(ns string, before []string, alice *laptop) {
	t := k.t
	t.Helper()
	url := k.webURL(ns)
	start := time.Now()
	if out, err := alice.intercept("alice-web", ns, "alice"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	k.expect(url, map[string]string{"alice": "hello from alice's laptop", "bob": "app", "": "app"}, 2*time.Minute)
	t.Logf("the intercept routes %s after it was created (agent injected, web rolled out)", time.Since(start).Round(100*time.Millisecond))
	injected := k.webPods(ns)
	for _, s := range injected {
		if !strings.Contains(s, `"Name":"tether-agent"`) {
			t.Errorf("a pod of web without the agent: %s", s)
		}
	}
	if out := alice.tether("--no-activity", "list", "--workloads", "-n", ns); !strings.Contains(out, kubestage.Web) || !strings.Contains(out, "alice-web") {
		t.Errorf("list --workloads does not show web with alice-web:\n%s", out)
	}
	out, err := osexec.Command(tetherBin, "helm", "uninstall", "--kubeconfig", k.c.Kubeconfig()).CombinedOutput()
	if err != nil {
		t.Fatalf("tether helm uninstall: %v\n%s", err, out)
	}
	if after := k.webPods(ns); !reflect.DeepEqual(after, before) {
		t.Fatalf("web's pods after uninstall:\n%v\nbefore the first intercept:\n%v", after, before)
	}
	k.expect(url, map[string]string{"alice": "app", "": "app"}, 30*time.Second)
}

// A replace intercept without --port covers every port web's Services
// target, known from the workload before any agent is injected: web's
// http and, through a second Service, its first-byte port. Requests to
// both Services reach the laptop and none the app, whoever sends them,
// until leave gives web its traffic back.
func TestReplaceCoversServicePorts(t *testing.T) {
	needForward(t)
	needWorkloads(t)
	needInject(t)
	k := setUp(t)
	ns := k.web(1)
	ctx := context.Background()
	first := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-first", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": kubestage.Web},
			Ports:    []corev1.ServicePort{{Port: kubestage.FirstPort, TargetPort: intstr.FromString(kubestage.FirstPortName)}},
		},
	}
	if _, err := k.admin.CoreV1().Services(ns).Create(ctx, first, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ip, err := kubestage.ClusterIP(ctx, k.admin, ns, first.Name)
	if err != nil {
		t.Fatal(err)
	}
	url, firstURL := k.webURL(ns), fmt.Sprintf("http://%s:%d/", ip, kubestage.FirstPort)
	alice := k.laptop(0, "alice")
	alice.serveLaptop()
	alice.connect()
	out := alice.tether("intercept", kubestage.Web, "-n", ns, "--replace", "--to", fmt.Sprint(devPort))
	want := fmt.Sprintf("other ports: %d -> 127.0.0.1:%d, %d -> 127.0.0.1:%d", kubestage.WebPort, devPort, kubestage.FirstPort, devPort)
	if !strings.Contains(out, want) {
		t.Fatalf("tether intercept --replace without --port:\n%s\nwant %q", out, want)
	}
	var rows []struct {
		Name  string   `json:"name"`
		Ports []uint32 `json:"ports"`
	}
	if out := alice.tether("--no-activity", "list", "--json"); json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 ||
		!reflect.DeepEqual(rows[0].Ports, []uint32{kubestage.WebPort, kubestage.FirstPort}) {
		t.Fatalf("tether list --json: want intercept %s covering %d and %d:\n%s", kubestage.Web, kubestage.WebPort, kubestage.FirstPort, out)
	}
	laptop := "hello from alice's laptop"
	k.expect(url, map[string]string{"": laptop, "bob": laptop}, 2*time.Minute)
	k.expect(firstURL, map[string]string{"": laptop}, 10*time.Second)
	alice.tether("leave", kubestage.Web)
	if out := alice.tether("--no-activity", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("tether list --json after leave:\n%s", out)
	}
	k.expect(url, map[string]string{"": "app", "bob": "app"}, 30*time.Second)
}

// The ConfigMap's intercept.inactiveBlockTimeout, changed while the manager
// runs, decides the next conflict: alice's idle intercept blocks bob under
// an hour's timeout, and no longer once it is a few seconds.
func TestBlockTimeoutChangedLive(t *testing.T) {
	needForward(t)
	needWorkloads(t)
	needInject(t)
	k := setUp(t, "intercept.inactiveBlockTimeout=1h")
	ns := k.web(1)
	url := k.webURL(ns)
	alice, bob := k.laptop(0, "alice"), k.laptop(1, "bob")
	for _, l := range []*laptop{alice, bob} {
		l.serveLaptop()
		l.connect()
	}
	if out, err := alice.intercept("alice-web", ns, "alice"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	k.expect(url, map[string]string{"alice": "hello from alice's laptop"}, 2*time.Minute)
	// Idle for longer than the new timeout will be, under the old one.
	time.Sleep(rules.BlockTimeout + 3*rules.ReportInterval)
	if out, err := bob.intercept("bob-wide", ns, "a.*"); err == nil || !strings.Contains(out, "alice") {
		t.Fatalf("bob's wide intercept under a 1h block timeout: %v\n%s", err, out)
	}
	ctx := context.Background()
	cm, err := k.admin.CoreV1().ConfigMaps(kubestage.ManagerNamespace).Get(ctx, "traffic-manager", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["intercept.inactiveBlockTimeout"] = rules.BlockTimeout.String()
	if _, err := k.admin.CoreV1().ConfigMaps(kubestage.ManagerNamespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	labtest.Eventually(t, "bob's wide intercept accepted under the new timeout", 20*time.Second, time.Second, func() error {
		out, err := bob.intercept("bob-wide", ns, "a.*")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
	k.expect(url, map[string]string{"alice": "hello from bob's laptop"}, 30*time.Second)
	if out := alice.tether("--no-activity", "list"); !strings.Contains(out, "CONFLICT") {
		t.Errorf("alice's list after bob won:\n%s", out)
	}
}

// A developer's token is no agent's: the manager refuses alice as the agent
// of a workload (agents prove their pod with a projected token).
func TestDeveloperTokenRefusedAsAgent(t *testing.T) {
	needForward(t)
	needWorkloads(t)
	k := setUp(t)
	ns := k.web(1)
	ctx := context.Background()
	pod, err := kubestage.ManagerPod(ctx, k.admin)
	if err != nil {
		t.Fatal(err)
	}
	addr, stop, err := kubestage.PortForward(ctx, k.rc, k.admin, kubestage.ManagerNamespace, pod, 8081)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var codesSeen []string
	for _, creds := range []credentials.TransportCredentials{insecure.NewCredentials(), credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})} {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, wire.MDAuthorization, "Bearer "+kubelab.Users[1].Token), 10*time.Second)
		stream, err := managerpb.NewManagerClient(conn).WatchAgent(cctx, &managerpb.WatchAgentRequest{Workload: ns + "/" + kubestage.Web, Ports: []uint32{kubestage.WebPort}})
		if err == nil {
			_, err = stream.Recv()
		}
		cancel()
		conn.Close()
		switch status.Code(err) {
		case codes.PermissionDenied, codes.Unauthenticated:
			t.Logf("refused: %v", err)
			return
		case codes.Unavailable:
			codesSeen = append(codesSeen, err.Error()) // the other transport
		default:
			t.Fatalf("alice's token as the agent of %s/web: %v", ns, err)
		}
	}
	t.Fatalf("the manager did not answer: %v", codesSeen)
}

// The story of make demo on the cluster: `tether helm install`, real
// Deployment default/web, the laptops through their kubeconfigs; its steps
// cover disjoint intercepts per user, the too-broad one refused while the
// holder is active and winning after the block timeout (the old one flagged
// CONFLICT, then restored), inbound requests not counting, the keepalive
// script, revoke refused without and done with the configmap Role (granted
// through the API), and the TTL.
func TestStory(t *testing.T) {
	needForward(t)
	needWorkloads(t)
	needInject(t)
	c, admin, _ := labtest.Cluster(t)
	dir := t.TempDir()
	st, cleanup := kubestage.Stage(c, admin, tetherBin, dir)
	t.Cleanup(func() {
		if err := cleanup(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if err := story.Tell(ctx, st, tetherBin, testlog.New(t)); err != nil {
		t.Fatal(err)
	}
}

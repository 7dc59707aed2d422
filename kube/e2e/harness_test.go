package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/internal/kubestage"
	"github.com/tether-dev/tether/internal/netlab"
	"github.com/tether-dev/tether/internal/testlog"
	"github.com/tether-dev/tether/kube/internal/labtest"
)

// tetherBin is the binary under test, built by TestMain for the laptops'
// daemons and CLIs; the cluster runs the image of make image.
var tetherBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(func() int {
		if os.Geteuid() == 0 && !testing.Short() {
			dir, err := os.MkdirTemp("", "tether-kube-e2e-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			tetherBin = filepath.Join(dir, "tether")
			if out, err := exec.Command("go", "build", "-o", tetherBin, "../../cmd/tether").CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build tether: %v\n%s", err, out)
				return 1
			}
		}
		return labtest.Run(m, "/tmp/tether-kubelab-kube-e2e", "pause.tar", "tether.tar", "testapp.tar")
	}())
}

// The rules of the tests' installations: short, so that a block lapses and
// a session ends within a test.
var rules = kubestage.Rules{BlockTimeout: 4 * time.Second, TTL: 40 * time.Second, ReportInterval: time.Second}

// cluster is the test's view of the shared cluster.
type cluster struct {
	t     testing.TB
	c     *kubelab.Cluster
	admin kubernetes.Interface
	rc    *rest.Config
	lab   *netlab.Lab // the laptops' processes
	webs  []string    // namespaces of web
}

// setUp gives t the cluster with Tether installed by the Helm SDK (extra
// values after the tests' own), removed after t.
func setUp(t testing.TB, extra ...string) *cluster {
	t.Helper()
	c, admin, rc := labtest.Cluster(t)
	k := &cluster{t: t, c: c, admin: admin, rc: rc, lab: &netlab.Lab{}}
	ctx := context.Background()
	// Registered first: a failed install leaves a release to remove.
	t.Cleanup(func() {
		if err := k.lab.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			out, _ := c.Kubectl(ctx, "logs", "-n", kubestage.ManagerNamespace, "deployment/traffic-manager", "--tail=60")
			t.Logf("the manager's last lines:\n%s", out)
			for _, ns := range k.webs {
				out, _ := c.Kubectl(ctx, "logs", "-n", ns, "-l", "app="+kubestage.Web, "-c", "tether-agent", "--tail=30", "--prefix")
				t.Logf("the agents of %s/web:\n%s", ns, out)
			}
			out, _ = c.Kubectl(ctx, "get", "pods", "-A", "-o", "wide")
			t.Logf("the pods:\n%s", out)
			out, _ = c.Kubectl(ctx, "get", "events", "-A", "--sort-by=.lastTimestamp")
			t.Logf("the last events:\n%s", lastLines(string(out), 25))
		}
		// An uninstalled release is fine: a test may remove it itself.
		if err := kubestage.Uninstall(ctx, c, testlog.New(t)); err != nil && !strings.Contains(err.Error(), "not installed") {
			t.Error(err)
		}
	})
	start := time.Now()
	if err := kubestage.Install(ctx, c, rules, testlog.New(t), extra...); err != nil {
		t.Fatal(err)
	}
	t.Logf("installed in %s", time.Since(start).Round(100*time.Millisecond))
	if err := kubestage.ManagerAnswers(ctx, rc, admin, kubelab.Users[0].Token); err != nil {
		t.Fatal(err)
	}
	return k
}

// web deploys the test app in a namespace of t's own, lets the developers
// use it and returns the namespace.
func (k *cluster) web(replicas int32) string {
	k.t.Helper()
	ns := labtest.Namespace(k.t, k.admin)
	k.webs = append(k.webs, ns)
	ctx := context.Background()
	if err := kubestage.DeployWeb(ctx, k.admin, ns, replicas); err != nil {
		k.t.Fatal(err)
	}
	if err := kubestage.BindDevelopers(ctx, k.admin, ns); err != nil {
		k.t.Fatal(err)
	}
	// kube-proxy programs a new Service a moment after its pods are ready.
	url := k.webURL(ns)
	labtest.Eventually(k.t, "web's Service answers in the cluster", 30*time.Second, 250*time.Millisecond, func() error {
		if got := kubestage.AppAnswer(k.inCluster(url, "")); got != "hello from the app" {
			return fmt.Errorf("%s: %q", url, got)
		}
		return nil
	})
	return ns
}

// laptop is a developer on one of kubelab.Laptops: a root daemon there, the
// CLI with the user's kubeconfig.
type laptop struct {
	k      *cluster
	user   string
	netns  string
	socket string
	daemon *netlab.Proc
}

// laptop starts a daemon on laptop i for user.
func (k *cluster) laptop(i int, user string) *laptop {
	k.t.Helper()
	dir := k.t.TempDir()
	l := &laptop{k: k, user: user, netns: kubelab.Laptops[i].Netns, socket: filepath.Join(dir, "daemon.sock")}
	var err error
	if l.daemon, err = k.lab.Start(l.netns, filepath.Join(dir, "daemon.log"), tetherBin, "--socket", l.socket, "daemon", "--tun-name", "tether-"+user); err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(func() {
		// quit ends what connect started beside the daemon (the user's
		// port-forward); lab.Close stops the daemon after.
		_, _ = l.try("quit")
		if k.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "daemon.log"))
			k.t.Logf("%s's daemon log:\n%s", user, lastLines(string(b), 30))
		}
	})
	labtest.Eventually(k.t, user+"'s daemon answers", 15*time.Second, 200*time.Millisecond, func() error {
		_, err := l.try("--no-activity", "status")
		return err
	})
	return l
}

// try runs the CLI on the laptop as its user and returns the combined
// output.
func (l *laptop) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := kubestage.UserEnv(l.k.c, l.user, filepath.Join(filepath.Dir(l.socket), "home"))
	return l.k.lab.Run(ctx, l.netns, "env", append(append(env, tetherBin, "--socket", l.socket), args...)...)
}

// tether runs the CLI and fails the test if it fails.
func (l *laptop) tether(args ...string) string {
	l.k.t.Helper()
	out, err := l.try(args...)
	if err != nil {
		l.k.t.Fatalf("%s: %v", l.user, err)
	}
	return out
}

// connect connects through the user's kubeconfig (no --manager).
func (l *laptop) connect(args ...string) {
	l.k.t.Helper()
	l.tether(append([]string{"connect"}, args...)...)
	if st := l.status(); st["connected"] != true || st["user"] != l.user {
		l.k.t.Fatalf("%s after connect: %v", l.user, st)
	}
}

// status is `tether status --json`, without counting as activity.
func (l *laptop) status() map[string]any {
	l.k.t.Helper()
	var st map[string]any
	out := l.tether("--no-activity", "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		l.k.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// curl GETs url from the laptop (through Tether) with an x-user header.
func (l *laptop) curl(url, user string) string {
	args := []string{"-sS", "--max-time", "5", url}
	if user != "" {
		args = append(args, "-H", "x-user: "+user)
	}
	out, err := l.k.lab.Run(context.Background(), l.netns, "curl", args...)
	if err != nil {
		return "error: " + strings.TrimSpace(out)
	}
	return strings.TrimSpace(out)
}

// inCluster GETs url from the cluster's network (the node) with an x-user
// header ("" for none).
func (k *cluster) inCluster(url, user string) string {
	args := []string{"-sS", "--max-time", "5", url}
	if user != "" {
		args = append(args, "-H", "x-user: "+user)
	}
	out, err := k.lab.Run(context.Background(), kubelab.ClusterNetns, "curl", args...)
	if err != nil {
		return "error: " + strings.TrimSpace(out)
	}
	return strings.TrimSpace(out)
}

// feature skips t unless the tether CLI has a flag of a feature built in
// parallel with these tests, naming what is missing.
func feature(t *testing.T, name string, cmd []string, flag string) {
	t.Helper()
	requireRoot(t)
	if !has(t, cmd, flag) {
		t.Skipf("waits for feature %q: `tether %s` has no %s yet", name, strings.Join(cmd, " "), flag)
	}
}

// has says whether `tether CMD --help` shows flag.
func has(t *testing.T, cmd []string, flag string) bool {
	t.Helper()
	requireRoot(t)
	featureOnce.Lock()
	defer featureOnce.Unlock()
	key := strings.Join(cmd, " ") + " " + flag
	found, ok := features[key]
	if !ok {
		out, _ := exec.Command(tetherBin, append(cmd, "--help")...).CombinedOutput()
		found = strings.Contains(string(out), flag)
		features[key] = found
	}
	return found
}

var (
	featureOnce sync.Mutex // guards features
	features    = map[string]bool{}
)

// The features these tests wait for (issue 13), by the flag that shows each.
func needForward(t *testing.T) {
	feature(t, "forward: tether connect through the kubeconfig", []string{"connect"}, "--kubeconfig")
}
func needDiscover(t *testing.T) {
	feature(t, "discover: the session's namespace", []string{"connect"}, "--namespace")
}
func needWorkloads(t *testing.T) {
	feature(t, "workloads: real workloads", []string{"list"}, "--workloads")
}
func needInject(t *testing.T) {
	feature(t, "inject: agents injected by a webhook", []string{"uninstall"}, "--agents")
}

func requireRoot(t testing.TB) {
	t.Helper()
	labtest.Cluster(t) // skips, saying why, without a cluster
	if tetherBin == "" {
		t.Skip("no tether binary (root, without -short)")
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

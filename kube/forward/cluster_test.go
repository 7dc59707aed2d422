package forward_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/internal/kubestage"
	"github.com/tether-dev/tether/kube/helm"
	"github.com/tether-dev/tether/kube/internal/labtest"
)

func TestMain(m *testing.M) {
	labtest.Main(m, "/tmp/tether-kubelab-kube-forward", "pause.tar", "tether.tar", "testapp.tar")
}

// tetherBin is the tether binary of the image (make image), built from
// this tree.
func tetherBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBELAB_IMAGES")
	if dir == "" {
		dir = "../../bin/image"
	}
	bin, err := filepath.Abs(filepath.Join(dir, "build", "tether-amd64"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("the image's tether binary is missing (%v): run make image", err)
	}
	return bin
}

// laptop runs tether commands in the laptop namespace, which reaches only
// the API server, as one kubeconfig user with a private directory of its
// own (XDG_RUNTIME_DIR) for the forwarder. The forwarder runs as the
// test's uid (root here); the daemon is root as always, and gets no
// credential: connect hands it only the forwarder's socket.
type laptop struct {
	t       *testing.T
	c       *kubelab.Cluster
	bin     string
	socket  string // the daemon's control socket
	runtime string // the user's XDG_RUNTIME_DIR
	user    string
}

func (l *laptop) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := l.c.LaptopCommand(ctx, l.bin, append([]string{"--socket", l.socket}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+l.c.UserKubeconfig(l.user, true), "XDG_RUNTIME_DIR="+l.runtime, "TETHER_MANAGER=")
	return cmd
}

func (l *laptop) run(args ...string) string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := l.cmd(ctx, args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("tether %s as %s: %v\n%s%s", strings.Join(args, " "), l.user, err, out, l.forwarderLog())
	}
	return string(out)
}

func (l *laptop) forwarderLog() string {
	b, _ := os.ReadFile(filepath.Join(l.runtime, "tether", "forward.log"))
	return "forwarder log:\n" + lastLines(string(b), 15)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type status struct {
	Connected bool   `json:"connected"`
	Manager   string `json:"manager"`
	User      string `json:"user"`
	Link      string `json:"link"`
	Forward   *struct {
		Context, Namespace, Pod string
		TLS                     bool
		PID                     int
	} `json:"forward"`
}

func (l *laptop) status() status {
	l.t.Helper()
	var st status
	out := l.run("status", "--json", "--no-activity")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		l.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// curl fetches url from the laptop namespace, through the VIF.
func (l *laptop) curl(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := l.c.LaptopCommand(ctx, "curl", "-sS", "--max-time", "10", url).CombinedOutput()
	return string(out), err
}

// Connect through the kubeconfig: alice (token) and carol (client
// certificate) reach the manager from a namespace that reaches only the
// API server; the manager identifies each; the daemon holds no credential;
// a Service answers through the VIF; when the manager's pod is killed the
// session recovers through a port-forward to the new pod; quit stops the
// forwarder.
func TestConnectThroughKubeconfig(t *testing.T) {
	c, admin, _ := labtest.Cluster(t)
	bin := tetherBin(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	ctx := context.Background()
	install(t, c, admin)
	ns := labtest.Namespace(t, admin)
	if err := kubestage.DeployWeb(ctx, admin, ns, 1); err != nil {
		t.Fatal(err)
	}
	svc, err := admin.CoreV1().Services(ns).Get(ctx, kubestage.Web, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	webURL := fmt.Sprintf("http://%s:%d/", svc.Spec.ClusterIP, kubestage.WebPort)

	dir := t.TempDir()
	socket := filepath.Join(dir, "daemon.sock")
	daemonLog := filepath.Join(dir, "daemon.log")
	dctx, stopDaemon := context.WithCancel(ctx)
	daemon := c.LaptopCommand(dctx, bin, "--socket", socket, "--log-level", "debug", "daemon", "--tun-name", "tfw0", "--log-file", daemonLog)
	daemon.Cancel = func() error { return daemon.Process.Signal(os.Interrupt) }
	daemon.WaitDelay = 10 * time.Second
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopDaemon()
		_ = daemon.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(daemonLog)
			t.Logf("daemon log:\n%s", lastLines(string(b), 40))
		}
	})

	newLaptop := func(user string) *laptop {
		l := &laptop{t: t, c: c, bin: bin, socket: socket, runtime: filepath.Join(dir, user), user: user}
		if err := os.Mkdir(l.runtime, 0o700); err != nil {
			t.Fatal(err)
		}
		// A forwarder left by a failed test ends with it.
		t.Cleanup(func() { _ = l.cmd(context.Background(), "quit").Run() })
		return l
	}
	waitDaemon(t, socket)

	alice := newLaptop("alice")
	out := alice.run("connect")
	if !strings.Contains(out, "through a port-forward to pod traffic-manager-") {
		t.Fatalf("connect says:\n%s", out)
	}
	st := alice.status()
	if !st.Connected || st.User != "alice" || st.Forward == nil || st.Forward.Namespace != "tether" || !st.Forward.TLS || !strings.HasPrefix(st.Forward.Pod, "traffic-manager-") {
		t.Fatalf("status after connect: %+v forward %+v", st, st.Forward)
	}
	if !strings.HasPrefix(st.Manager, "unix://"+alice.runtime+"/tether/") {
		t.Fatalf("the daemon's manager is %s, want the forwarder's socket", st.Manager)
	}
	if _, err := os.Stat(filepath.Join(alice.runtime, "tether", "forward.sock")); err != nil {
		t.Fatal(err)
	}
	noCredential(t, socket)
	if out := alice.run("sessions", "--json", "--no-activity"); !strings.Contains(out, `"user": "alice"`) {
		t.Fatalf("the manager's sessions:\n%s", out)
	}
	// kube-proxy programs a new Service a moment after its pods are
	// ready: until then the manager's dial of the ClusterIP is refused.
	labtest.Eventually(t, "curl "+webURL+" through the VIF", 30*time.Second, 250*time.Millisecond, func() error {
		if body, err := alice.curl(webURL); err != nil || !strings.Contains(body, "web-") {
			return fmt.Errorf("%v: %s", err, body)
		}
		return nil
	})

	// The manager's pod dies; a new one starts, and the session comes
	// back through a port-forward to it.
	oldPod := st.Forward.Pod
	if err := admin.CoreV1().Pods("tether").Delete(ctx, oldPod, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	labtest.Eventually(t, "the session back through a new pod", 90*time.Second, time.Second, func() error {
		st := alice.status()
		if !st.Connected || st.Link != "ready" || st.Forward == nil || st.Forward.Pod == oldPod {
			return fmt.Errorf("status %+v forward %+v", st, st.Forward)
		}
		if body, err := alice.curl(webURL); err != nil || !strings.Contains(body, "web-") {
			return fmt.Errorf("curl: %v %s", err, body)
		}
		return nil
	})
	t.Logf("recovered through a new manager pod in %v", time.Since(start).Round(time.Second))
	fwdPID := alice.status().Forward.PID
	alice.run("quit")
	if err := exec.Command("kill", "-0", fmt.Sprint(fwdPID)).Run(); err == nil {
		t.Fatalf("the forwarder (pid %d) still runs after quit", fwdPID)
	}

	carol := newLaptop("carol")
	carol.run("connect")
	if st := carol.status(); !st.Connected || st.User != "carol" || st.Forward == nil || !st.Forward.TLS {
		t.Fatalf("carol's status: %+v forward %+v", st, st.Forward)
	}
	noCredential(t, socket)
	if body, err := carol.curl(webURL); err != nil || !strings.Contains(body, "web-") {
		t.Fatalf("curl as carol: %v\n%s", err, body)
	}
	carol.run("quit")
}

// install installs the chart (auth.mode kubernetes and TLS by default)
// with alice and carol as developers, and checks that an upgrade keeps the
// manager's certificate.
func install(t *testing.T, c *kubelab.Cluster, admin kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	kubeconfig := c.Kubeconfig()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	var out bytes.Buffer
	o := helm.Options{Kube: flags, Namespace: "tether", Timeout: 2 * time.Minute, Out: &out, Progress: &out}
	vals := map[string]any{
		"subnets":    []any{kubelab.PodCIDR, kubelab.ServiceCIDR},
		"image":      map[string]any{"repository": "tether.local/tether", "tag": "dev", "pullPolicy": "Never"},
		"developers": map[string]any{"users": []any{"alice", "carol"}},
	}
	if err := helm.Install(ctx, o, vals); err != nil {
		t.Fatalf("install: %v\n%s", err, out.String())
	}
	t.Cleanup(func() {
		if err := helm.Uninstall(context.Background(), o); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	})
	before, err := admin.CoreV1().Secrets("tether").Get(ctx, "traffic-manager-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := helm.Upgrade(ctx, o, map[string]any{}, false); err != nil {
		t.Fatalf("upgrade: %v\n%s", err, out.String())
	}
	after, err := admin.CoreV1().Secrets("tether").Get(ctx, "traffic-manager-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before.Data["tls.crt"], after.Data["tls.crt"]) || !bytes.Equal(before.Data["ca.crt"], after.Data["ca.crt"]) {
		t.Fatal("an upgrade issued a new manager certificate: connected forwarders would stop trusting it")
	}
}

func waitDaemon(t *testing.T, socket string) {
	t.Helper()
	labtest.Eventually(t, "the daemon's socket", 20*time.Second, 100*time.Millisecond, func() error {
		_, err := os.Stat(socket)
		return err
	})
}

// noCredential: what the daemon keeps of the session (its cache, which a
// restarted daemon resumes from) holds no token and no TLS material: the
// forwarder adds the user's identity.
func noCredential(t *testing.T, socket string) {
	t.Helper()
	b, err := os.ReadFile(socket + ".session")
	if err != nil {
		t.Fatal(err)
	}
	var cache map[string]any
	if err := json.Unmarshal(b, &cache); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"token", "ca_pem", "tls"} {
		if v, ok := cache[k]; ok {
			t.Errorf("the daemon's session cache holds %s = %v", k, v)
		}
	}
	if m, _ := cache["manager"].(string); !strings.HasPrefix(m, "unix://") {
		t.Errorf("the daemon's manager is %q, want the forwarder's socket", m)
	}
}

package e2e

// Benchmarks on the test cluster: a laptop connected through its kubeconfig
// (the API-server port-forward that `tether connect` opens as the user)
// against the same transfer from inside the cluster network (the node's
// namespace, kubelab.ClusterNetns, to the pod IP over the node's bridge, no
// Tether involved), in the same run. Nothing asserts on time.
//
//	go test -run '^$' -bench . -benchtime 1x ./kube/e2e/
//
// The pod end is the test app (internal/kubelab/testapp): GET /bytes and
// PUT /sink for bulk, a first-byte port for connections. iperf3 would need
// an image of its own to run in a pod; the client end is curl, which every
// test here uses already, and netbench's connect loop, which the namespace
// lab's BenchmarkConnect uses.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/internal/kubestage"
	"github.com/tether-dev/tether/internal/netbench"
	"github.com/tether-dev/tether/kube/internal/labtest"
)

func init() { netbench.ConnectLoopChild() }

const (
	bulkBytes   = 128 << 20 // per transfer: seconds through a port-forward, bounded by curl's --max-time
	bulkRounds  = 3         // VIF and in-cluster runs alternate, so drift of the machine hits both
	connectN    = 500       // sequential connections per loop
	connectWarm = 50
	firstPort   = 8082 // the test app's first-byte port (FIRST_PORT)
)

// BenchmarkPortForward: bulk download and upload of 128 MiB with curl, and
// 500 sequential connections (dial + first byte + close), from a laptop
// connected through the API-server port-forward to a pod of the test app,
// and from the node's namespace to the same pod.
func BenchmarkPortForward(b *testing.B) {
	requireRoot(b)
	k := setUp(b)
	ns := k.web(1)
	l := k.laptop(0, kubelab.Users[1].Name)
	l.connect()
	k.measure(b, l, webPodIP(b, k, ns), "BenchmarkPortForward: the laptop through the API-server port-forward")
}

// BenchmarkManagerService: BenchmarkPortForward's transfers with the laptop
// connected by --manager to the manager's Service, made reachable for this
// benchmark only: a NodePort on the cluster's end of the laptop's veth,
// and a FORWARD rule in the cluster namespace that lets the laptops reach
// the manager's pod port and nothing else. The chart's certificate names
// the Service's DNS names and 127.0.0.1, not that address, so this
// installation serves gRPC in plaintext (tls.enabled=false); the
// port-forward's figures include TLS.
func BenchmarkManagerService(b *testing.B) {
	requireRoot(b)
	k := setUp(b, "service.type=NodePort", "tls.enabled=false")
	ns := k.web(1)
	addr := k.exposeManager(b)
	user := kubelab.Users[1]
	l := k.laptop(0, user.Name)
	tokenFile := filepath.Join(b.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(user.Token), 0o600); err != nil {
		b.Fatal(err)
	}
	l.tether("connect", "--manager", addr, "--token-file", tokenFile)
	if st := l.status(); st["connected"] != true || st["user"] != user.Name {
		b.Fatalf("%s after connect --manager %s: %v", user.Name, addr, st)
	}
	k.measure(b, l, webPodIP(b, k, ns), "BenchmarkManagerService: the laptop by --manager to a NodePort of the manager's Service (plaintext)")
}

// exposeManager makes the manager's gRPC port reachable from the laptops
// at its NodePort on kubelab.LaptopGW until b ends, and returns that
// address.
func (k *cluster) exposeManager(b *testing.B) string {
	b.Helper()
	ctx := context.Background()
	svc, err := k.admin.CoreV1().Services(kubestage.ManagerNamespace).Get(ctx, "traffic-manager", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var nodePort int32
	for _, p := range svc.Spec.Ports {
		if p.Name == "grpc" {
			nodePort = p.NodePort
		}
	}
	name, err := kubestage.ManagerPod(ctx, k.admin)
	if err != nil {
		b.Fatal(err)
	}
	pod, err := k.admin.CoreV1().Pods(kubestage.ManagerNamespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var podPort int32
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == "grpc" {
				podPort = p.ContainerPort
			}
		}
	}
	if nodePort == 0 || podPort == 0 || pod.Status.PodIP == "" {
		b.Fatalf("the manager's grpc port: NodePort %d, pod %s port %d", nodePort, pod.Status.PodIP, podPort)
	}
	// kube-proxy DNATs the NodePort to the pod before FORWARD, where the
	// lab drops whatever comes in from a laptop.
	rule := []string{"FORWARD", "-i", "laptop+", "-d", pod.Status.PodIP, "-p", "tcp", "--dport", strconv.Itoa(int(podPort)), "-j", "ACCEPT"}
	iptables := func(op string) error {
		_, err := k.lab.Run(ctx, kubelab.ClusterNetns, "iptables", append([]string{"-w", op}, rule...)...)
		return err
	}
	if err := iptables("-I"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := iptables("-D"); err != nil {
			b.Error(err)
		}
	})
	return fmt.Sprintf("%s:%d", kubelab.LaptopGW, nodePort)
}

// measure runs the bulk and connect transfers from laptop l, connected,
// and from the node's namespace to the test app's pod, and reports them.
func (k *cluster) measure(b *testing.B, l *laptop, pod, title string) {
	b.Helper()
	// The routes reach the daemon a moment after connect returns.
	url := fmt.Sprintf("http://%s:%d/", pod, kubestage.WebPort)
	labtest.Eventually(b, "the pod answers through the VIF", 30*time.Second, 250*time.Millisecond, func() error {
		if got := kubestage.AppAnswer(l.curl(url, "")); got != "hello from the app" {
			return fmt.Errorf("%s: %q", url, got)
		}
		return nil
	})
	upload := filepath.Join(b.TempDir(), "upload")
	// Sparse: curl reads zeros without touching the disk.
	if err := os.WriteFile(upload, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(upload, bulkBytes); err != nil {
		b.Fatal(err)
	}

	sides := []struct{ name, netns string }{{"VIF", l.netns}, {"cluster", kubelab.ClusterNetns}}
	tab := &netbench.Table{Title: fmt.Sprintf(
		"%s vs the node's namespace to the pod (direct); %d MiB per transfer (curl), %d connections", title, bulkBytes>>20, connectN)}
	b.ReportMetric(0, "ns/op")
	for _, dir := range []string{"download", "upload"} {
		var sum [2]float64
		var runs [2][]float64
		for range b.N {
			for range bulkRounds {
				for i, s := range sides {
					mbps := curlBulk(b, k, s.netns, pod, dir, upload)
					sum[i] += mbps
					runs[i] = append(runs[i], mbps)
				}
			}
		}
		n := float64(b.N * bulkRounds)
		v, c := sum[0]/n, sum[1]/n
		b.ReportMetric(v, "vif-"+dir+"-MB/s")
		b.ReportMetric(c, "cluster-"+dir+"-MB/s")
		b.ReportMetric(v/c, dir+"-ratio")
		tab.Add(dir+" (MB/s)", v, c)
		tab.AddVIF(dir+": each VIF run, min–max (MB/s)", slices.Min(runs[0]), slices.Max(runs[0]))
	}

	var stats [2]netbench.ConnectStats
	addr := fmt.Sprintf("%s:%d", pod, firstPort)
	for range b.N {
		for i, s := range sides {
			if _, err := netbench.ConnectLoop(k.lab, s.netns, addr, connectWarm); err != nil {
				b.Fatalf("warm-up from %s: %v", s.name, err)
			}
			st, err := netbench.ConnectLoop(k.lab, s.netns, addr, connectN)
			if err != nil {
				b.Fatalf("from %s: %v", s.name, err)
			}
			stats[i] = st // the last run's: percentiles do not average
		}
	}
	netbench.ReportConnect(b, tab, stats[0], stats[1], "cluster")
	tab.Print()
}

// webPodIP is the IP of the one pod of web in ns.
func webPodIP(b *testing.B, k *cluster, ns string) string {
	b.Helper()
	pods, err := k.admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + kubestage.Web})
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			return p.Status.PodIP
		}
	}
	b.Fatalf("no pod of %s/%s with an IP among %d", ns, kubestage.Web, len(pods.Items))
	return ""
}

// curlBulk moves bulkBytes between namespace netns and the test app's pod
// (GET /bytes for download, PUT /sink of the file upload for upload) and
// returns curl's average rate in MB/s (10^6 bytes), failing b unless every
// byte arrived.
func curlBulk(b *testing.B, k *cluster, netns, pod, dir, upload string) float64 {
	b.Helper()
	base := fmt.Sprintf("http://%s:%d", pod, kubestage.WebPort)
	// No Expect: 100-continue, whose wait curl would count in the upload.
	args := []string{"-sS", "--fail", "--max-time", "120", "-o", "/dev/null", "-H", "Expect:"}
	if dir == "download" {
		args = append(args, "-w", "%{speed_download} %{size_download}", fmt.Sprintf("%s/bytes?n=%d", base, bulkBytes))
	} else {
		args = append(args, "-w", "%{speed_upload} %{size_upload}", "-T", upload, base+"/sink")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// stdout only: curl's -w line.
	out, err := k.lab.Command(ctx, netns, "curl", args...).Output()
	f := strings.Fields(string(out))
	if err != nil || len(f) != 2 {
		b.Fatalf("curl %s in %s: %v: %q (a 404: the test app's image predates /bytes and /sink, run make image)", strings.Join(args, " "), netns, err, out)
	}
	rate, err1 := strconv.ParseFloat(f[0], 64)
	size, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || size != bulkBytes {
		b.Fatalf("curl %s in %s: %q: want %d bytes (an image without /bytes and /sink: run make image)", dir, netns, out, bulkBytes)
	}
	return rate / 1e6
}

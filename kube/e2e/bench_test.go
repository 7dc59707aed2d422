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
//
// Beside the figures, the CPU the VIF runs cost the processes on the path
// (the daemon, the manager's, and through the port-forward the user's
// forwarder, the API server and the kubelet): CPU-s per GB of bulk, CPU
// and run-queue wait (runnable, no CPU free) per connection, from
// /proc. TETHER_BENCH_SET adds chart values (helm --set syntax) to both
// installations, for measuring the manager with other resources, say.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/internal/kubestage"
	"github.com/tether-dev/tether/internal/netbench"
	"github.com/tether-dev/tether/kube/internal/labtest"
)

func init() { netbench.ConnectLoopChild() }

// benchSetEnv holds extra chart values for the benchmarks' installations,
// as one helm --set argument ("a=1,b=2").
const benchSetEnv = "TETHER_BENCH_SET"

// benchSets are the installation's values: the benchmark's own, then
// benchSetEnv's.
func benchSets(own ...string) []string {
	if v := os.Getenv(benchSetEnv); v != "" {
		return append(own, v)
	}
	return own
}

const (
	bulkBytes   = 128 << 20 // per transfer: seconds through a port-forward, bounded by curl's --max-time
	bulkRounds  = 3         // VIF and in-cluster runs alternate, so drift of the machine hits both
	connectN    = 500       // sequential connections per loop
	connectWarm = 50
)

// BenchmarkPortForward: bulk download and upload of 128 MiB with curl, and
// 500 sequential connections (dial + first byte + close), from a laptop
// connected through the API-server port-forward to a pod of the test app,
// and from the node's namespace to the same pod.
func BenchmarkPortForward(b *testing.B) {
	requireRoot(b)
	k := setUp(b, benchSets()...)
	ns := k.web(1)
	l := k.laptop(0, kubelab.Users[1].Name)
	l.connect()
	fwd, _ := l.status()["forward"].(map[string]any)
	pid, _ := fwd["pid"].(float64)
	if pid == 0 {
		b.Fatalf("no forwarder's pid in status --json: %v", fwd)
	}
	procs := append(k.tetherProcs(b, l), proc{"forwarder", int(pid)},
		k.clusterProc(b, "kube-apiserver"), k.clusterProc(b, "kubelet"))
	k.measure(b, l, webPodIP(b, k, ns), procs, "BenchmarkPortForward: the laptop through the API-server port-forward")
}

// BenchmarkManagerService: BenchmarkPortForward's transfers with the laptop
// connected by --manager to the manager's Service, made reachable for this
// benchmark only: a NodePort on the cluster's end of the laptop's veth,
// and a FORWARD rule in the cluster namespace that lets the laptops reach
// the manager's pod port and nothing else. TLS verified as a user would:
// the chart's certificate names that address too (tls.extraSANs), and
// connect --ca-file gets the CA of configmap traffic-manager-ca.
func BenchmarkManagerService(b *testing.B) {
	requireRoot(b)
	k := setUp(b, benchSets("service.type=NodePort", "tls.extraSANs={"+kubelab.LaptopGW+"}")...)
	ns := k.web(1)
	addr := k.exposeManager(b)
	user := kubelab.Users[1]
	l := k.laptop(0, user.Name)
	dir := b.TempDir()
	cm, err := k.admin.CoreV1().ConfigMaps(kubestage.ManagerNamespace).Get(context.Background(), "traffic-manager-ca", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	tokenFile, caFile := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	if err := errors.Join(os.WriteFile(tokenFile, []byte(user.Token), 0o600), os.WriteFile(caFile, []byte(cm.Data["ca.crt"]), 0o644)); err != nil {
		b.Fatal(err)
	}
	l.tether("connect", "--manager", addr, "--token-file", tokenFile, "--ca-file", caFile)
	if st := l.status(); st["connected"] != true || st["user"] != user.Name {
		b.Fatalf("%s after connect --manager %s: %v", user.Name, addr, st)
	}
	k.measure(b, l, webPodIP(b, k, ns), k.tetherProcs(b, l), "BenchmarkManagerService: the laptop by --manager to a NodePort of the manager's Service (TLS)")
}

// proc is a process on the VIF's path whose CPU the benchmarks report.
type proc struct {
	name string
	pid  int
}

// tetherProcs are laptop l's daemon and the manager's process in its pod.
func (k *cluster) tetherProcs(b *testing.B, l *laptop) []proc {
	b.Helper()
	pid := l.daemon.Cmd.Process.Pid
	// ip netns exec execs the daemon in place.
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || filepath.Base(exe) != filepath.Base(tetherBin) {
		b.Fatalf("pid %d is not the daemon (%s): %v", pid, exe, err)
	}
	return []proc{{"daemon", pid}, {"manager", k.managerPID(b)}}
}

// managerPod is the manager's running pod.
func (k *cluster) managerPod(b *testing.B) *corev1.Pod {
	b.Helper()
	ctx := context.Background()
	name, err := kubestage.ManagerPod(ctx, k.admin)
	if err != nil {
		b.Fatal(err)
	}
	pod, err := k.admin.CoreV1().Pods(kubestage.ManagerNamespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return pod
}

// managerPID finds the manager's process among the host's: the one in the
// manager pod's cgroup whose arguments start with "manager" (the other is
// the pod's pause).
func (k *cluster) managerPID(b *testing.B) int {
	b.Helper()
	pod := k.managerPod(b)
	uid := string(pod.UID)
	// cgroupfs names the pod's cgroup pod<UID>, systemd pod<UID with _>.
	marks := []string{"pod" + uid, "pod" + strings.ReplaceAll(uid, "-", "_")}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		cmdline, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err1 != nil || err2 != nil || !slices.ContainsFunc(marks, func(m string) bool { return strings.Contains(string(cg), m) }) {
			continue
		}
		if args := strings.Split(string(cmdline), "\x00"); len(args) > 1 && args[1] == "manager" {
			return pid
		}
	}
	b.Fatalf("no process of pod %s/%s (uid %s) runs the manager", kubestage.ManagerNamespace, pod.Name, uid)
	return 0
}

// clusterProc is the cluster's process running the binary name (one of
// kubelab.Binaries), in the cluster's network namespace.
func (k *cluster) clusterProc(b *testing.B, name string) proc {
	b.Helper()
	out, err := exec.Command("ip", "netns", "pids", kubelab.ClusterNetns).Output()
	if err != nil {
		b.Fatalf("ip netns pids %s: %v", kubelab.ClusterNetns, err)
	}
	for _, f := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(f)
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && filepath.Base(exe) == name {
			return proc{name, pid}
		}
	}
	b.Fatalf("no %s in namespace %s", name, kubelab.ClusterNetns)
	return proc{}
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
	pod := k.managerPod(b)
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
// and from the node's namespace to the test app's pod, and reports them
// with what the VIF runs cost procs.
func (k *cluster) measure(b *testing.B, l *laptop, pod string, procs []proc, title string) {
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
	pids := make([]int, len(procs))
	names := make([]string, len(procs))
	for i, p := range procs {
		pids[i], names[i] = p.pid, p.name
	}
	who := strings.Join(names, ", ")

	sides := []struct{ name, netns string }{{"VIF", l.netns}, {"cluster", kubelab.ClusterNetns}}
	tab := &netbench.Table{Title: fmt.Sprintf(
		"%s vs the node's namespace to the pod (direct); %d MiB per transfer (curl), %d connections", title, bulkBytes>>20, connectN)}
	load0 := loadAvg(b)
	b.ReportMetric(0, "ns/op")
	for _, dir := range []string{"download", "upload"} {
		var sum [2]float64
		var runs [2][]float64
		cpu := make([]float64, len(procs)) // CPU-s of the VIF runs
		for range b.N {
			for range bulkRounds {
				for i, s := range sides {
					var mbps float64
					run := func() { mbps = curlBulk(b, k, s.netns, pod, dir, upload) }
					if i == 0 {
						for j, r := range netbench.CPUDuring(b, run, pids...) {
							cpu[j] += r.Secs
						}
					} else {
						run()
					}
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
		gb := n * bulkBytes / 1e9
		for j := range cpu {
			cpu[j] /= gb
			b.ReportMetric(cpu[j], fmt.Sprintf("%s-CPU-s/GB-%s", names[j], dir))
		}
		tab.AddVIF(fmt.Sprintf("%s: CPU-s per GB: %s", dir, who), cpu...)
	}

	var stats [2]netbench.ConnectStats
	var used []netbench.CPURate
	addr := fmt.Sprintf("%s:%d", pod, kubestage.FirstPort)
	for range b.N {
		for i, s := range sides {
			if _, err := netbench.ConnectLoop(k.lab, s.netns, addr, connectWarm); err != nil {
				b.Fatalf("warm-up from %s: %v", s.name, err)
			}
			var st netbench.ConnectStats
			var err error
			run := func() { st, err = netbench.ConnectLoop(k.lab, s.netns, addr, connectN) }
			if i == 0 {
				used = netbench.CPUDuring(b, run, pids...)
			} else {
				run()
			}
			if err != nil {
				b.Fatalf("from %s: %v", s.name, err)
			}
			stats[i] = st // the last run's: percentiles do not average
		}
	}
	netbench.ReportConnect(b, tab, stats[0], stats[1], "cluster")
	perConn := func(secs float64) float64 { return secs * 1e6 / connectN }
	cpus, waits := make([]float64, len(procs)), make([]float64, len(procs))
	for j, r := range used {
		cpus[j], waits[j] = perConn(r.Secs), perConn(r.Wait)
		b.ReportMetric(cpus[j], names[j]+"-CPU-us/conn")
		b.ReportMetric(waits[j], names[j]+"-wait-us/conn")
	}
	tab.AddVIF("connections: CPU µs per connection: "+who, cpus...)
	tab.AddVIF("connections: run-queue wait µs per connection (runnable, no CPU free): "+who, waits...)
	tab.AddVIF("load average (1 min) before, after", load0, loadAvg(b))
	tab.Print()
}

// loadAvg is the machine's 1-minute load average.
func loadAvg(b *testing.B) float64 {
	b.Helper()
	s, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		b.Fatal(err)
	}
	v, err := strconv.ParseFloat(strings.Fields(string(s))[0], 64)
	if err != nil {
		b.Fatalf("/proc/loadavg %q: %v", s, err)
	}
	return v
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

package kubelab

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The cluster's addresses, all from 198.18.0.0/15 and away from the ranges
// internal/netlab uses (198.18.1.0/24, 198.18.2.0/24).
const (
	HostAddr    = "198.19.0.1" // the host's end of the veth into the cluster
	NodeAddr    = "198.19.0.2" // the cluster's end: node IP, API server, kubelet, CoreDNS
	LaptopGW    = "198.19.0.5" // the cluster's end of the first laptop's veth; every laptop reaches the API server here
	LaptopAddr  = "198.19.0.6" // the first laptop namespace's address
	PodCIDR     = "198.18.128.0/24"
	ServiceCIDR = "198.18.160.0/24"
	APIService  = "198.18.160.1" // the kubernetes service's ClusterIP
	DNSAddr     = NodeAddr       // kubelet's clusterDNS; CoreDNS runs as a process on the node
	APIPort     = 16443
	NodeName    = "kubelab"

	// ClusterNetns holds the whole cluster; LaptopNetns is the first laptop.
	ClusterNetns = "tether-kube"
	LaptopNetns  = "tether-kube-laptop"
	hostVeth     = "tkube0"
	bridge       = "kl-br0"
	cniNetwork   = "tether-kubelab"

	// DefaultDir is where make kube-up keeps the cluster (KUBELAB_DIR).
	DefaultDir = "/tmp/tether-kubelab"
)

// The image references the harness imports and the manifests use, with
// imagePullPolicy: Never.
const (
	TetherImage  = "tether.local/tether:dev"
	PauseImage   = "tether.local/pause:dev"
	TestAppImage = "tether.local/testapp:dev"
)

// Laptop is a network namespace outside the cluster, a developer's machine:
// it reaches the API server and nothing else of the cluster.
type Laptop struct {
	Netns string
	Addr  string // the laptop's address, on a /30 with GW
	GW    string // the cluster's end of the laptop's veth
	veth  string // that end's name in ClusterNetns
}

// Laptops are the laptop namespaces, one per developer of a test: each runs
// a daemon of its own, and a daemon routes the cluster's subnets into its
// TUN, so two daemons cannot share a namespace. Every laptop reaches the
// API server at LaptopGW (the later ones through a host route to it), so
// the kubeconfigs of UserKubeconfig(user, true) serve all of them.
var Laptops = []Laptop{
	{Netns: LaptopNetns, Addr: LaptopAddr, GW: LaptopGW, veth: "laptop0"},
	{Netns: "tether-kube-laptop2", Addr: "198.19.0.10", GW: "198.19.0.9", veth: "laptop1"},
	{Netns: "tether-kube-laptop3", Addr: "198.19.0.14", GW: "198.19.0.13", veth: "laptop2"},
}

// Binaries are the programs make kube-bins builds; Up needs all of them.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns", "kubectl"}

// Users are the test users. Token users authenticate with a static token
// (tokens.csv); certificate users with a client certificate signed by the
// cluster's CA. Admin is in system:masters; the others have no rights until
// a test grants them some.
var Users = []User{
	{Name: "admin", Token: "kubelab-admin-token", Groups: []string{"system:masters"}},
	{Name: "alice", Token: "kubelab-alice-token", Groups: []string{"tether-dev"}},
	{Name: "bob", Token: "kubelab-bob-token", Groups: []string{"tether-dev"}},
	{Name: "carol", Groups: []string{"tether-dev"}}, // client certificate
}

// User is a cluster user with a kubeconfig of its own.
type User struct {
	Name   string
	Token  string // empty: a client-certificate user
	Groups []string
}

// Options configure Up.
type Options struct {
	Dir    string    // state directory; DefaultDir when empty
	Bins   string    // directory with Binaries (make kube-bins)
	Images []string  // OCI tarballs to import into the node's containerd
	Log    io.Writer // progress lines; nil: discarded
}

// Cluster is a running cluster. It is alive until Down.
type Cluster struct {
	Dir  string
	Bins string
	log  io.Writer
}

// Kubeconfig is the path of the admin's kubeconfig for use from the host.
func (c *Cluster) Kubeconfig() string { return filepath.Join(c.Dir, "kubeconfig") }

// UserKubeconfig is the kubeconfig of a user (see Users) for use from the
// host, or from any of the Laptops when laptop is true.
func (c *Cluster) UserKubeconfig(user string, laptop bool) string {
	if laptop {
		return filepath.Join(c.Dir, "laptop", user+".kubeconfig")
	}
	return filepath.Join(c.Dir, "users", user+".kubeconfig")
}

// Up starts a cluster in opts.Dir and waits until the node is Ready and
// CoreDNS answers. A cluster that fails to come up is torn down.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("kubelab: the test cluster needs root (network namespaces, containerd, kubelet)")
	}
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	bins, err := filepath.Abs(opts.Bins)
	if err != nil {
		return nil, err
	}
	if missing := MissingBinaries(bins); len(missing) > 0 {
		return nil, fmt.Errorf("kubelab: %s missing in %s: run make kube-bins", strings.Join(missing, ", "), bins)
	}
	for _, tool := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "iptables", "nsenter", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("kubelab: %s not found: install Debian's containerd, runc, iptables, conntrack, iproute2 and util-linux (.ci/run lists them)", tool)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return nil, errors.New("kubelab: /usr/lib/cni/bridge not found: install Debian's containernetworking-plugins")
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	c := &Cluster{Dir: dir, Bins: bins, log: logw}
	// Leftovers of a crashed run in the same directory go first, so the
	// record taken next describes the machine as it was before any run.
	// Down refuses while another directory's cluster runs.
	if err := Down(dir); err != nil {
		return nil, fmt.Errorf("kubelab: cleaning a previous run in %s: %w", dir, err)
	}
	if err := claimMachine(dir); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := c.up(ctx, opts.Images); err != nil {
		c.dumpLogs()
		return nil, errors.Join(err, c.Down())
	}
	c.logf("cluster up in %s", time.Since(start).Round(100*time.Millisecond))
	return c, nil
}

// MissingBinaries lists the Binaries not in dir.
func MissingBinaries(dir string) []string {
	var missing []string
	for _, b := range Binaries {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.log, "kubelab: "+format+"\n", args...)
}

func (c *Cluster) path(parts ...string) string {
	return filepath.Join(append([]string{c.Dir}, parts...)...)
}

func (c *Cluster) bin(name string) string { return filepath.Join(c.Bins, name) }

func (c *Cluster) up(ctx context.Context, images []string) error {
	if err := writeRecord(c.Dir); err != nil {
		return err
	}
	c.logf("writing certificates and configuration in %s", c.Dir)
	if err := c.writeFiles(); err != nil {
		return err
	}
	c.logf("network namespaces %s (cluster) and %d laptops (%s, ...)", ClusterNetns, len(Laptops), LaptopNetns)
	if err := setupNetwork(); err != nil {
		return err
	}
	anchor, err := c.startAnchor()
	if err != nil {
		return err
	}
	c.logf("control plane")
	if err := c.start(anchor, "etcd", c.etcdArgs()...); err != nil {
		return err
	}
	if err := c.start(anchor, "kube-apiserver", c.apiserverArgs()...); err != nil {
		return err
	}
	if err := c.waitAPI(ctx); err != nil {
		return err
	}
	if err := c.start(anchor, "kube-controller-manager", c.controllerManagerArgs()...); err != nil {
		return err
	}
	if err := c.start(anchor, "kube-scheduler", "--kubeconfig", c.Kubeconfig(), "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port=10259"); err != nil {
		return err
	}
	c.logf("containerd")
	if err := c.start(anchor, "containerd", "--config", c.path("containerd", "config.toml")); err != nil {
		return err
	}
	if err := c.waitSocket(ctx, c.containerdSocket()); err != nil {
		return err
	}
	for _, img := range images {
		if err := c.importImage(ctx, img); err != nil {
			return err
		}
	}
	c.logf("kubelet, kube-proxy, CoreDNS")
	if err := c.start(anchor, "kubelet", "--config", c.path("kubelet.yaml"), "--kubeconfig", c.Kubeconfig(),
		"--node-ip", NodeAddr, "--hostname-override", NodeName, "--root-dir", c.path("kubelet"),
		"--cert-dir", c.path("kubelet", "pki")); err != nil {
		return err
	}
	if err := c.start(anchor, "kube-proxy", "--config", c.path("kube-proxy.yaml")); err != nil {
		return err
	}
	if err := c.start(anchor, "coredns", "-conf", c.path("Corefile")); err != nil {
		return err
	}
	if err := c.waitNodeReady(ctx); err != nil {
		return err
	}
	return c.waitDNS(ctx)
}

func (c *Cluster) containerdSocket() string { return c.path("containerd", "containerd.sock") }

func (c *Cluster) etcdArgs() []string {
	return []string{"--name", "kubelab", "--data-dir", c.path("etcd"),
		"--listen-client-urls", "http://127.0.0.1:23790", "--advertise-client-urls", "http://127.0.0.1:23790",
		"--listen-peer-urls", "http://127.0.0.1:23800", "--initial-advertise-peer-urls", "http://127.0.0.1:23800",
		"--initial-cluster", "kubelab=http://127.0.0.1:23800", "--initial-cluster-state", "new",
		"--unsafe-no-fsync", "--log-level", "warn"}
}

func (c *Cluster) apiserverArgs() []string {
	pki := func(f string) string { return c.path("pki", f) }
	return []string{
		"--etcd-servers", "http://127.0.0.1:23790",
		"--bind-address", "0.0.0.0", "--secure-port", fmt.Sprint(APIPort), "--advertise-address", NodeAddr,
		"--tls-cert-file", pki("apiserver.crt"), "--tls-private-key-file", pki("apiserver.key"),
		"--client-ca-file", pki("ca.crt"), "--token-auth-file", pki("tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", ServiceCIDR,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pki("sa.pub"), "--service-account-signing-key-file", pki("sa.key"),
		"--allow-privileged=true", "--kubelet-preferred-address-types", "InternalIP",
		"--profiling=false",
		// Webhooks (the agent injector) are called at their Service's
		// endpoints: the node's namespace has no route to ClusterIPs.
		"--enable-aggregator-routing=true",
	}
}

func (c *Cluster) controllerManagerArgs() []string {
	return []string{"--kubeconfig", c.Kubeconfig(), "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port=10257",
		"--service-account-private-key-file", c.path("pki", "sa.key"),
		"--root-ca-file", c.path("pki", "ca.crt"),
		"--use-service-account-credentials=false",
		"--service-cluster-ip-range", ServiceCIDR,
		"--cluster-name", "kubelab",
		// The node gets spec.podCIDRs (the whole pod range: one node), as
		// on most clusters, so subnet discovery reads a real one.
		"--allocate-node-cidrs", "--cluster-cidr", PodCIDR, "--node-cidr-mask-size", "24",
	}
}

// tlsClient trusts the cluster's CA, for the readiness probes.
func (c *Cluster) tlsClient() (*http.Client, error) {
	pem, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

// poll calls f every 250 ms until it returns nil or the deadline passes.
func poll(ctx context.Context, what string, limit time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubelab: %s not ready after %s: %w", what, limit, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Cluster) waitAPI(ctx context.Context) error {
	client, err := c.tlsClient()
	if err != nil {
		return err
	}
	return poll(ctx, "kube-apiserver", 3*time.Minute, func() error {
		if err := c.checkAlive("etcd", "kube-apiserver"); err != nil {
			return err
		}
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s:%d/readyz", NodeAddr, APIPort), nil)
		req.Header.Set("Authorization", "Bearer "+Users[0].Token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz: %s: %s", resp.Status, lastLines(body, 3))
		}
		return nil
	})
}

func (c *Cluster) waitSocket(ctx context.Context, sock string) error {
	return poll(ctx, "containerd", time.Minute, func() error {
		if err := c.checkAlive("containerd"); err != nil {
			return err
		}
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

func (c *Cluster) waitNodeReady(ctx context.Context) error {
	return poll(ctx, "node "+NodeName, 3*time.Minute, func() error {
		if err := c.checkAlive("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy", "coredns"); err != nil {
			return err
		}
		out, err := c.Kubectl(ctx, "get", "node", NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(string(out)); s != "True" {
			return fmt.Errorf("Ready=%q", s)
		}
		return nil
	})
}

// waitDNS asks CoreDNS from the host for the kubernetes service, which
// also proves CoreDNS has synced with the API server.
func (c *Cluster) waitDNS(ctx context.Context) error {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(DNSAddr, "53"))
	}}
	return poll(ctx, "CoreDNS", time.Minute, func() error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		addrs, err := r.LookupHost(ctx, "kubernetes.default.svc.cluster.local")
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0] != APIService {
			return fmt.Errorf("kubernetes.default.svc.cluster.local is %v, want %s", addrs, APIService)
		}
		return nil
	})
}

// Kubectl runs kubectl as the admin from the host and returns its standard
// output; the error carries its standard error.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return c.KubectlAs(ctx, "admin", args...)
}

// KubectlAs runs kubectl from the host as one of Users.
func (c *Cluster) KubectlAs(ctx context.Context, user string, args ...string) ([]byte, error) {
	return c.KubectlCmd(ctx, c.UserKubeconfig(user, false), nil, args...)
}

// KubectlCmd runs kubectl with a kubeconfig and standard input.
func (c *Cluster) KubectlCmd(ctx context.Context, kubeconfig string, stdin []byte, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin("kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Apply applies YAML manifests as the admin.
func (c *Cluster) Apply(ctx context.Context, yaml string) error {
	_, err := c.KubectlCmd(ctx, c.Kubeconfig(), []byte(yaml), "apply", "-f", "-")
	return err
}

// LaptopCommand is a command that runs in the first laptop namespace.
func (c *Cluster) LaptopCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return Laptops[0].Command(ctx, name, args...)
}

// Command is a command that runs in the laptop's namespace.
func (l Laptop) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.Netns, name}, args...)...)
}

// KubectlPath is the kubectl binary, for tests that run it themselves.
func (c *Cluster) KubectlPath() string { return c.bin("kubectl") }

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// dumpLogs writes the end of each component's log, for a cluster that did
// not come up.
func (c *Cluster) dumpLogs() {
	logs, _ := filepath.Glob(c.path("logs", "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		fmt.Fprintf(c.log, "--- %s (last lines)\n%s\n", filepath.Base(l), lastLines(b, 15))
	}
}

// Down tears the cluster down (see Down).
func (c *Cluster) Down() error {
	c.logf("tearing down %s", c.Dir)
	return Down(c.Dir)
}

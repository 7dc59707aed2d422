package kubelab

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

func (c *Cluster) writeFiles() error {
	for _, d := range []string{"pki", "users", "laptop", "logs", "pids", "etcd", "kubelet/pki", "pod-logs",
		"containerd/root", "containerd/state", "runc", "cni/net.d", "cni/ipam"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	pki := c.path("pki")
	ca, err := newCA(pki)
	if err != nil {
		return err
	}
	if err := ca.issue(pki, "apiserver", "kube-apiserver", nil,
		[]net.IP{net.ParseIP(NodeAddr), net.ParseIP(LaptopGW), net.ParseIP(APIService), net.ParseIP("127.0.0.1")},
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}); err != nil {
		return err
	}
	if err := writeServiceAccountKey(pki); err != nil {
		return err
	}
	var tokens strings.Builder
	for _, u := range Users {
		if u.Token != "" {
			fmt.Fprintf(&tokens, "%s,%s,%s,%q\n", u.Token, u.Name, u.Name, strings.Join(u.Groups, ","))
			continue
		}
		if err := ca.issue(pki, u.Name, u.Name, u.Groups, nil, nil); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(tokens.String()), 0o600); err != nil {
		return err
	}
	for _, u := range Users {
		for _, laptop := range []bool{false, true} {
			if err := c.writeKubeconfig(c.UserKubeconfig(u.Name, laptop), u, laptop); err != nil {
				return err
			}
		}
	}
	if err := c.writeKubeconfig(c.Kubeconfig(), Users[0], false); err != nil {
		return err
	}
	files := map[string]string{
		"containerd/config.toml":               c.containerdConfig(),
		"cni/net.d/10-tether-kubelab.conflist": c.cniConfig(),
		"kubelet.yaml":                         c.kubeletConfig(),
		"kube-proxy.yaml":                      c.kubeProxyConfig(),
		"Corefile":                             c.corefile(),
		// Pods get CoreDNS from kubelet's clusterDNS; the node itself has
		// no upstream resolver to pass on.
		"resolv.conf": "",
	}
	for name, content := range files {
		if err := os.WriteFile(c.path(name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) writeKubeconfig(path string, u User, laptop bool) error {
	ca, err := os.ReadFile(c.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	server := NodeAddr
	if laptop {
		server = LaptopGW
	}
	b64 := base64.StdEncoding.EncodeToString
	cred := "    token: " + u.Token + "\n"
	if u.Token == "" {
		crt, err := os.ReadFile(c.path("pki", u.Name+".crt"))
		if err != nil {
			return err
		}
		key, err := os.ReadFile(c.path("pki", u.Name+".key"))
		if err != nil {
			return err
		}
		cred = "    client-certificate-data: " + b64(crt) + "\n    client-key-data: " + b64(key) + "\n"
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubelab
  cluster:
    server: https://%s:%d
    certificate-authority-data: %s
users:
- name: %s
  user:
%scontexts:
- name: %s@kubelab
  context:
    cluster: kubelab
    user: %s
    namespace: default
current-context: %s@kubelab
`, server, APIPort, b64(ca), u.Name, cred, u.Name, u.Name, u.Name)
	return os.WriteFile(path, []byte(kc), 0o600)
}

// containerdConfig keeps containerd's state in Dir. restrict_oom_score_adj
// is required where root lacks CAP_SYS_RESOURCE: without it runc fails to
// start containers ("can't get final child's PID from pipe").
func (c *Cluster) containerdConfig() string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = %[3]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
`, c.path("containerd", "root"), c.path("containerd", "state"), c.containerdSocket(),
		c.path("containerd", "opt"), PauseImage, c.path("runc"), c.path("cni", "net.d"))
}

// cniConfig puts pods on a bridge in the cluster namespace. Pods get routes
// to the service range and to the node (API server, CoreDNS) but no default
// route: their traffic must never leave for the host's networks.
func (c *Cluster) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": %q,
      "ranges": [[{"subnet": %q}]],
      "routes": [{"dst": %q}, {"dst": "%s/32"}]
    }
  }]
}
`, cniNetwork, bridge, c.path("cni", "ipam"), PodCIDR, ServiceCIDR, NodeAddr)
}

// kubeletConfig: cgroupfs because PID 1 need not be systemd; the eviction
// and image GC thresholds are low so a full test disk does not evict the
// test pods; anonymous access with AlwaysAllow is fine for a node that
// listens only inside the cluster namespace.
func (c *Cluster) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
resolvConf: %s
clusterDNS: [%s]
clusterDomain: cluster.local
podLogsDir: %s
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
evictionHard:
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
  memory.available: "50Mi"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`, NodeAddr, c.containerdSocket(), c.path("resolv.conf"), DNSAddr, c.path("pod-logs"))
}

// kubeProxyConfig: iptables mode inside the cluster namespace. masqueradeAll
// because the pods share one bridge: without it a reply from a service's
// pod to a client pod on the same bridge skips the un-DNAT. The conntrack
// settings are zero so kube-proxy leaves the machine-wide sysctls alone.
func (c *Cluster) kubeProxyConfig() string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
mode: iptables
clusterCIDR: %s
bindAddress: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables:
  masqueradeAll: true
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, c.Kubeconfig(), NodeName, PodCIDR, NodeAddr)
}

func (c *Cluster) corefile() string {
	return fmt.Sprintf(`.:53 {
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa {
        kubeconfig %s admin@kubelab
        pods insecure
    }
    cache 5
}
`, c.Kubeconfig())
}

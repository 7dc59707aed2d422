package kubelab

import (
	"fmt"
	"os/exec"
	"strings"
)

// setupNetwork creates the cluster and laptop namespaces and their veths:
//
//	host tkube0 198.19.0.1/30 <-> eth0 198.19.0.2/30 [cluster] laptop0 198.19.0.5/30 <-> eth0 198.19.0.6/30 [laptop]
//	                                                 [cluster] laptop1 198.19.0.9/30 <-> eth0 198.19.0.10/30 [laptop2]
//	                                                 [cluster] laptop2 198.19.0.13/30 <-> eth0 198.19.0.14/30 [laptop3]
//
// The host and the laptops each know only their connected /30 (the later
// laptops also a host route to 198.19.0.5, where every laptop's kubeconfig
// points), so they reach the API server (which listens on every cluster
// end) but no pod or service address; a FORWARD drop in the cluster
// namespace makes that hold even for a laptop that adds routes of its own.
func setupNetwork() error {
	steps := [][]string{
		{"netns", "add", ClusterNetns},
		{"link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", ClusterNetns},
		{"addr", "add", HostAddr + "/30", "dev", hostVeth},
		{"link", "set", hostVeth, "up"},
		{"-n", ClusterNetns, "link", "set", "lo", "up"},
		{"-n", ClusterNetns, "addr", "add", NodeAddr + "/30", "dev", "eth0"},
		{"-n", ClusterNetns, "link", "set", "eth0", "up"},
	}
	for _, l := range Laptops {
		steps = append(steps,
			[]string{"netns", "add", l.Netns},
			[]string{"-n", ClusterNetns, "link", "add", l.veth, "type", "veth", "peer", "name", "eth0", "netns", l.Netns},
			[]string{"-n", ClusterNetns, "addr", "add", l.GW + "/30", "dev", l.veth},
			[]string{"-n", ClusterNetns, "link", "set", l.veth, "up"},
			[]string{"-n", l.Netns, "link", "set", "lo", "up"},
			[]string{"-n", l.Netns, "addr", "add", l.Addr + "/30", "dev", "eth0"},
			[]string{"-n", l.Netns, "link", "set", "eth0", "up"})
		if l.GW != LaptopGW {
			steps = append(steps, []string{"-n", l.Netns, "route", "add", LaptopGW + "/32", "via", l.GW})
		}
	}
	// The node reaches Service IPs as a node with a default route does:
	// kube-proxy DNATs them in OUTPUT, after the routing lookup that needs
	// a route. This one goes to loopback, where what no Service claims is
	// dropped, so nothing leaves for the host; the source is the node's
	// address, which the pods route back to.
	steps = append(steps, []string{"-n", ClusterNetns, "route", "add", ServiceCIDR, "dev", "lo", "src", NodeAddr})
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			return err
		}
	}
	// Traffic from a pod to a service IP is DNATed to another pod on the
	// same bridge and routed back out of it.
	if err := run("ip", "netns", "exec", ClusterNetns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	return run("ip", "netns", "exec", ClusterNetns, "iptables", "-w", "-I", "FORWARD", "-i", "laptop+", "-j", "DROP")
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubelab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

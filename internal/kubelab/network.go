package kubelab

import (
	"fmt"
	"os/exec"
	"strings"
)

// setupNetwork creates the cluster and laptop namespaces and their veths:
//
//	host tkube0 198.19.0.1/30 <-> eth0 198.19.0.2/30 [cluster] laptop0 198.19.0.5/30 <-> eth0 198.19.0.6/30 [laptop]
//
// The host and the laptop each know only their connected /30, so they
// reach the API server (which listens on both cluster ends) but no pod or
// service address; a FORWARD drop in the cluster namespace makes that hold
// even for a laptop that adds routes of its own.
func setupNetwork() error {
	steps := [][]string{
		{"netns", "add", ClusterNetns},
		{"netns", "add", LaptopNetns},
		{"link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", ClusterNetns},
		{"addr", "add", HostAddr + "/30", "dev", hostVeth},
		{"link", "set", hostVeth, "up"},
		{"-n", ClusterNetns, "link", "set", "lo", "up"},
		{"-n", ClusterNetns, "addr", "add", NodeAddr + "/30", "dev", "eth0"},
		{"-n", ClusterNetns, "link", "set", "eth0", "up"},
		{"-n", ClusterNetns, "link", "add", laptopVeth, "type", "veth", "peer", "name", "eth0", "netns", LaptopNetns},
		{"-n", ClusterNetns, "addr", "add", LaptopGW + "/30", "dev", laptopVeth},
		{"-n", ClusterNetns, "link", "set", laptopVeth, "up"},
		{"-n", LaptopNetns, "link", "set", "lo", "up"},
		{"-n", LaptopNetns, "addr", "add", LaptopAddr + "/30", "dev", "eth0"},
		{"-n", LaptopNetns, "link", "set", "eth0", "up"},
	}
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
	return run("ip", "netns", "exec", ClusterNetns, "iptables", "-w", "-I", "FORWARD", "-i", laptopVeth, "-j", "DROP")
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubelab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

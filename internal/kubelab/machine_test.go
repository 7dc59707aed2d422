package kubelab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// machineState is what the teardown check compares before Up and after
// Down: the traces a cluster could leave on the host.
type machineState map[string][]string

// daemonNames are the programs a cluster runs (as /proc/PID/comm shows
// them, at most 15 bytes).
var daemonNames = []string{"etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "kubelet", "kube-proxy", "coredns", "containerd", "containerd-shim", "runc", "pause", "testapp"}

func snapshotMachine(dir string) machineState {
	s := machineState{}
	procs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && slices.Contains(daemonNames, strings.TrimSpace(string(b))) {
			s["process"] = append(s["process"], filepath.Base(filepath.Dir(p))+" "+strings.TrimSpace(string(b)))
		}
	}
	if ms, err := readMounts(); err == nil {
		for _, m := range ms {
			if strings.HasPrefix(m.point, dir) || strings.Contains(m.point, "containerd") || strings.Contains(m.point, "kubelet") ||
				strings.HasPrefix(m.point, "/run/netns/cni-") || strings.HasPrefix(m.point, "/run/netns/tether-kube") {
				s["mount"] = append(s["mount"], m.point)
			}
		}
	}
	netns, _ := dirNames(runNetns)
	for _, n := range netns {
		if strings.HasPrefix(n, "tether-kube") || strings.HasPrefix(n, "cni-") {
			s["netns"] = append(s["netns"], n)
		}
	}
	out, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			name := strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
			// Only names a cluster could create: other tests on the machine
			// make links of their own meanwhile.
			if name == hostVeth || name == bridge || strings.HasPrefix(name, "laptop") || strings.HasPrefix(name, "veth") {
				s["link"] = append(s["link"], name)
			}
		}
	}
	out, _ = exec.Command("ip", "-o", "addr", "show").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 3 && (strings.HasPrefix(f[3], "198.19.0.") || strings.HasPrefix(f[3], "198.18.128.") || strings.HasPrefix(f[3], "198.18.160.")) {
			s["address"] = append(s["address"], f[1]+" "+f[3])
		}
	}
	counters := regexp.MustCompile(`\[\d+:\d+\]`)
	for _, cmd := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
		out, _ := exec.Command(cmd[0], cmd[1:]...).Output()
		for _, l := range strings.Split(string(out), "\n") {
			if l != "" && !strings.HasPrefix(l, "#") {
				s[cmd[0]] = append(s[cmd[0]], counters.ReplaceAllString(l, ""))
			}
		}
	}
	if hier, err := cgroupHierarchies(); err == nil {
		for _, h := range hier {
			names, _ := dirNames(h)
			for _, n := range names {
				if fi, err := os.Stat(filepath.Join(h, n)); err == nil && fi.IsDir() {
					s["cgroup"] = append(s["cgroup"], filepath.Join(h, n))
				}
			}
		}
	}
	for _, d := range sharedDirsWatched {
		if d == runNetns {
			continue // the netns kind covers it; other tests add namespaces meanwhile
		}
		if names, err := dirNames(d); err == nil {
			s["file"] = append(s["file"], d+"/")
			for _, n := range names {
				s["file"] = append(s["file"], filepath.Join(d, n))
			}
		}
	}
	if _, err := os.Stat(dir); err == nil {
		s["file"] = append(s["file"], dir)
	}
	return s
}

// leftovers lists what after has that before had not.
func leftovers(before, after machineState) []string {
	var out []string
	for kind, items := range after {
		for _, it := range items {
			if !slices.Contains(before[kind], it) {
				out = append(out, fmt.Sprintf("%s %s", kind, it))
			}
		}
	}
	slices.Sort(out)
	return out
}

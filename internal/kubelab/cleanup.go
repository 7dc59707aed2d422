package kubelab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownerFile names the directory of the cluster that holds the machine's
// fixed names (the namespaces, the host veth and its address): one cluster
// runs at a time.
const ownerFile = "/run/tether-kubelab.owner"

// Shared paths that kubelet and containerd write to outside Dir.
var (
	runNetns          = "/run/netns"
	runContainerd     = "/run/containerd"
	varLibCNI         = "/var/lib/cni"
	varLogPods        = "/var/log/pods"
	varLogContainers  = "/var/log/containers"
	sharedDirsWatched = []string{runNetns, runContainerd, runContainerd + "/s", varLibCNI, varLibCNI + "/results", varLibCNI + "/networks", varLogPods, varLogContainers}
)

// record is what existed before Up started anything; Down removes only
// what is not in it.
type record struct {
	// Entries lists, per watched directory, the names in it; a directory
	// missing from the map did not exist.
	Entries map[string][]string
	// Cgroups lists the top-level entries of each cgroup hierarchy.
	Cgroups map[string][]string
}

func writeRecord(dir string) error {
	r := record{Entries: map[string][]string{}, Cgroups: map[string][]string{}}
	for _, d := range sharedDirsWatched {
		if names, err := dirNames(d); err == nil {
			r.Entries[d] = names
		}
	}
	hier, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hier {
		names, err := dirNames(h)
		if err != nil {
			return err
		}
		r.Cgroups[h] = names
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "record.json"), b, 0o644)
}

func readRecord(dir string) (record, bool) {
	var r record
	b, err := os.ReadFile(filepath.Join(dir, "record.json"))
	if err != nil || json.Unmarshal(b, &r) != nil {
		return record{}, false
	}
	return r, true
}

func dirNames(d string) ([]string, error) {
	ents, err := os.ReadDir(d)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

func cgroupHierarchies() ([]string, error) {
	ms, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.fstype != "tmpfs" {
			out = append(out, m.point)
		}
	}
	return out, nil
}

// claimMachine makes dir the owner of the machine's cluster names, unless
// a cluster of another directory still runs; that of a crashed run in
// another directory is torn down first.
func claimMachine(dir string) error {
	b, err := os.ReadFile(ownerFile)
	if err == nil {
		other := strings.TrimSpace(string(b))
		if other != dir {
			if readPid(other, "anchor") != 0 {
				return fmt.Errorf("kubelab: a cluster from %s is running; stop it first with KUBELAB_DIR=%s make kube-down", other, other)
			}
			if err := Down(other); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(ownerFile, []byte(dir+"\n"), 0o644)
}

// Down removes a cluster and everything it created, from its directory
// alone: it works on a running cluster, on what a crashed one left, and on
// nothing. The order matters: kubelet first so it restarts no pod, pods
// through CRI while containerd still runs (that unmounts their volumes
// and runs CNI DEL), then the daemons, then what they leave behind.
func Down(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// The namespaces and the host veth have fixed names: never take them
	// from a running cluster of another directory.
	if b, err := os.ReadFile(ownerFile); err == nil {
		if other := strings.TrimSpace(string(b)); other != dir && readPid(other, "anchor") != 0 {
			return fmt.Errorf("kubelab: the running cluster is %s's, not %s's; stop it with KUBELAB_DIR=%s make kube-down", other, dir, other)
		}
	}
	rec, haveRecord := readRecord(dir)
	var errs []error
	var k killer
	defer k.awaitReaped(10 * time.Second)
	stop := func(name string, grace time.Duration) { errs = append(errs, k.stopPid(dir, name, grace)) }
	stop("kubelet", 20*time.Second)
	// Shims exit by themselves as their pods go, and containerd 1.6
	// daemonizes them: noting them now lets Down wait for init to reap them.
	k.killed = append(k.killed, shimPids(dir)...)
	if readPid(dir, "containerd") != 0 {
		errs = append(errs, removePods(filepath.Join(dir, "containerd", "containerd.sock")))
	}
	for _, n := range []string{"kube-proxy", "coredns", "kube-scheduler", "kube-controller-manager"} {
		stop(n, 10*time.Second)
	}
	stop("containerd", 10*time.Second)
	errs = append(errs, k.killShims(dir))
	stop("kube-apiserver", 10*time.Second)
	stop("etcd", 10*time.Second)
	errs = append(errs, k.killNetnsProcs(), k.removeCgroups(rec, haveRecord))
	stop("anchor", 5*time.Second)
	errs = append(errs, unmountUnder(dir), removeNetwork(), removeSharedFiles(dir, rec, haveRecord))
	if b, err := os.ReadFile(ownerFile); err == nil && strings.TrimSpace(string(b)) == dir {
		errs = append(errs, os.Remove(ownerFile))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// killShims kills the shims of this cluster's containerd that are still
// running.
func (k *killer) killShims(dir string) error {
	var errs []error
	for _, pid := range shimPids(dir) {
		errs = append(errs, k.kill(pid, 2*time.Second))
	}
	return errors.Join(errs...)
}

// shimPids finds the runc shims of this cluster's containerd by the
// containerd address on their command line: containerd 1.6 daemonizes
// them, so they are nobody's children.
func shimPids(dir string) []int {
	marker := "-address\x00" + filepath.Join(dir, "containerd", "containerd.sock") + "\x00"
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), "containerd-shim") || !strings.Contains(string(b), marker) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killNetnsProcs kills whatever still runs in the cluster's namespaces.
func (k *killer) killNetnsProcs() error {
	var errs []error
	for _, ns := range netnsNames() {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				errs = append(errs, k.kill(pid, 2*time.Second))
			}
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the kubepods cgroups kubelet made in every
// hierarchy, killing what still runs in them.
func (k *killer) removeCgroups(rec record, haveRecord bool) error {
	hier, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range hier {
		names, _ := filepath.Glob(filepath.Join(h, "kubepods*"))
		for _, p := range names {
			if haveRecord && slices.Contains(rec.Cgroups[h], filepath.Base(p)) {
				continue
			}
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
				continue
			}
			errs = append(errs, k.removeCgroup(p))
		}
	}
	return errors.Join(errs...)
}

func (k *killer) removeCgroup(p string) error {
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil
	}
	var errs []error
	for _, e := range ents {
		if e.IsDir() {
			errs = append(errs, k.removeCgroup(filepath.Join(p, e.Name())))
		}
	}
	procs, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
	for _, f := range strings.Fields(string(procs)) {
		if pid, err := strconv.Atoi(f); err == nil {
			errs = append(errs, k.kill(pid, time.Second))
		}
	}
	// The kernel frees a cgroup a moment after its last task exits.
	for i := 0; ; i++ {
		err := syscall.Rmdir(p)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			break
		}
		if i == 50 {
			errs = append(errs, fmt.Errorf("kubelab: rmdir %s: %w", p, err))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.Join(errs...)
}

// unmountUnder unmounts what is mounted under dir in this mount namespace.
// The daemons' mounts live in the anchor's namespace and go with it; this
// catches a propagation the host set up differently.
func unmountUnder(dir string) error {
	ms, err := readMounts()
	if err != nil {
		return err
	}
	var errs []error
	for i := len(ms) - 1; i >= 0; i-- {
		if p := ms[i].point; p == dir || strings.HasPrefix(p, dir+"/") {
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("kubelab: umount %s: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// netnsNames are the cluster's namespace and the laptops'.
func netnsNames() []string {
	names := []string{ClusterNetns}
	for _, l := range Laptops {
		names = append(names, l.Netns)
	}
	return names
}

// removeNetwork deletes the namespaces; with them go the veths, the pod
// bridge and every iptables and nft rule kube-proxy wrote.
func removeNetwork() error {
	var errs []error
	names := netnsNames()
	slices.Reverse(names)
	for _, ns := range names {
		if _, err := os.Stat(filepath.Join(runNetns, ns)); err == nil {
			errs = append(errs, run("ip", "netns", "del", ns))
		}
	}
	// The host end of the cluster's veth goes with its peer once the
	// namespace is freed, which the kernel does after "ip netns del"
	// returns: a device gone between show and del is what we wanted.
	if err := exec.Command("ip", "link", "show", hostVeth).Run(); err == nil {
		out, err := exec.Command("ip", "link", "del", hostVeth).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "No such device") && !strings.Contains(string(out), "Cannot find device") {
			errs = append(errs, fmt.Errorf("kubelab: ip link del %s: %w: %s", hostVeth, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// removeSharedFiles removes what kubelet, containerd and the CNI plugins
// wrote to shared paths: pod network namespace files, CNI results and IP
// reservations, log links, shim sockets, and the directories that did not
// exist before.
func removeSharedFiles(dir string, rec record, haveRecord bool) error {
	var errs []error
	isNew := func(d, name string) bool {
		if !haveRecord {
			return false
		}
		before, existed := rec.Entries[d]
		return !existed || !slices.Contains(before, name)
	}
	if names, err := dirNames(runNetns); err == nil {
		for _, n := range names {
			if strings.HasPrefix(n, "cni-") && isNew(runNetns, n) {
				p := filepath.Join(runNetns, n)
				_ = syscall.Unmount(p, syscall.MNT_DETACH)
				errs = append(errs, os.Remove(p))
			}
		}
	}
	results, _ := filepath.Glob(filepath.Join(varLibCNI, "results", cniNetwork+"-*"))
	for _, r := range results {
		errs = append(errs, os.Remove(r))
	}
	errs = append(errs, os.RemoveAll(filepath.Join(varLibCNI, "networks", cniNetwork)))
	if links, err := dirNames(varLogContainers); err == nil {
		for _, l := range links {
			p := filepath.Join(varLogContainers, l)
			if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, dir+"/") {
				errs = append(errs, os.Remove(p))
			}
		}
	}
	for _, d := range []string{varLogPods, runContainerd + "/s"} {
		if names, err := dirNames(d); err == nil {
			for _, n := range names {
				if isNew(d, n) {
					errs = append(errs, os.RemoveAll(filepath.Join(d, n)))
				}
			}
		}
	}
	// Directories that did not exist before go when they are empty, deepest
	// first.
	if haveRecord {
		dirs := slices.Clone(sharedDirsWatched)
		slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
		for _, d := range dirs {
			if _, existed := rec.Entries[d]; existed || d == runNetns {
				// /run/netns is ip netns's: the first "ip netns add" makes
				// it a bind mount of itself, which rmdir cannot remove
				// (EBUSY), and unmounting it would strand a namespace
				// another test adds meanwhile.
				continue
			}
			if d == runContainerd {
				// containerd 1.6 leaves its runtime state here; nothing
				// else used it before this run.
				errs = append(errs, os.RemoveAll(d))
				continue
			}
			if names, err := dirNames(d); err == nil && len(names) == 0 {
				errs = append(errs, os.Remove(d))
			}
		}
	}
	return errors.Join(errs...)
}

// removePods stops and removes every pod sandbox through CRI, bounded in
// time: a hung containerd is killed after it. A stop can fail while a
// sandbox's shim exits under it ("ttrpc: closed"); containerd notices the
// exit a moment later and the next round stops and removes it, so only
// what is left after a few rounds is an error.
func removePods(sock string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var err error
	for round := 0; round < 3; round++ {
		if err = criRemoveAll(ctx, sock); err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Second)
	}
	return err
}

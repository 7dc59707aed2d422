package kubelab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Every daemon is a detached process (its own session, its log in
// Dir/logs) with a pid file in Dir/pids holding "PID EXECUTABLE", so
// Down can stop it from another process and never kills a reused pid.

// startAnchor starts the process whose namespaces every daemon joins: the
// cluster's network namespace and one mount namespace in which the host's
// cgroup hierarchies are mounted again (ip netns exec mounts a fresh /sys,
// where /sys/fs/cgroup is empty). containerd and kubelet must share one
// mount namespace, or the pods' projected volumes come out empty.
func (c *Cluster) startAnchor() (int, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return 0, err
	}
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, m := range mounts {
		fmt.Fprintf(&script, "mkdir -p %s\nmount -t %s -o %s %s %s\n", m.point, m.fstype, m.opts, m.source, m.point)
	}
	ready := c.path("anchor.ready")
	fmt.Fprintf(&script, "touch %s\nexec sleep 2147483647\n", ready)
	cmd := exec.Command("ip", "netns", "exec", ClusterNetns, "sh", "-c", script.String())
	pid, err := c.spawn("anchor", cmd)
	if err != nil {
		return 0, err
	}
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(ready); err == nil {
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && filepath.Base(exe) == "sleep" {
				return pid, writePid(c.Dir, "anchor", pid, exe)
			}
		}
		if !alive(pid) {
			b, _ := os.ReadFile(c.path("logs", "anchor.log"))
			return 0, fmt.Errorf("kubelab: mounting cgroups in %s failed: %s", ClusterNetns, lastLines(b, 5))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, errors.New("kubelab: the namespace anchor did not start in 5s")
}

// start runs a daemon inside the anchor's network and mount namespaces.
func (c *Cluster) start(anchor int, name string, args ...string) error {
	exe := c.bin(name)
	if name == "containerd" {
		p, err := exec.LookPath("containerd")
		if err != nil {
			return err
		}
		exe = p
	}
	cmd := exec.Command("nsenter", append([]string{"--target", strconv.Itoa(anchor), "--mount", "--net", "--", exe}, args...)...)
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	pid, err := c.spawn(name, cmd)
	if err != nil {
		return err
	}
	return writePid(c.Dir, name, pid, exe)
}

func (c *Cluster) spawn(name string, cmd *exec.Cmd) (int, error) {
	logf, err := os.OpenFile(c.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("kubelab: start %s: %w", name, err)
	}
	// Reap it when it exits while this process lives; after this process
	// exits (make kube-up), init does.
	go func() { _ = cmd.Wait() }()
	return cmd.Process.Pid, nil
}

func writePid(dir, name string, pid int, exe string) error {
	return os.WriteFile(filepath.Join(dir, "pids", name+".pid"), fmt.Appendf(nil, "%d %s\n", pid, exe), 0o644)
}

// readPid returns the pid in a pid file if that process still runs the
// recorded executable, else 0.
func readPid(dir, name string) int {
	b, err := os.ReadFile(filepath.Join(dir, "pids", name+".pid"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || !alive(pid) {
		return 0
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	// Right after the start the process may still be nsenter.
	if err != nil || (exe != f[1] && filepath.Base(exe) != "nsenter") {
		return 0
	}
	return pid
}

// alive says whether pid runs; a zombie does not.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// checkAlive fails with the end of a daemon's log when it has exited.
func (c *Cluster) checkAlive(names ...string) error {
	for _, n := range names {
		if readPid(c.Dir, n) == 0 {
			b, _ := os.ReadFile(c.path("logs", n+".log"))
			return fmt.Errorf("kubelab: %s exited:\n%s", n, lastLines(b, 10))
		}
	}
	return nil
}

// killer kills processes and remembers them, so that the caller can wait
// once, at the end, for their zombies to be reaped: orphans are reaped by
// init, which may take a moment, and a process listing right after Down
// should show nothing.
type killer struct{ killed []int }

func (k *killer) kill(pid int, grace time.Duration) error {
	k.killed = append(k.killed, pid)
	return killWait(pid, grace)
}

// stopPid stops the daemon of a pid file: SIGTERM, then SIGKILL after
// grace.
func (k *killer) stopPid(dir, name string, grace time.Duration) error {
	defer os.Remove(filepath.Join(dir, "pids", name+".pid"))
	pid := readPid(dir, name)
	if pid == 0 {
		return nil
	}
	return k.kill(pid, grace)
}

func (k *killer) awaitReaped(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for _, pid := range k.killed {
		for time.Now().Before(deadline) {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func killWait(pid int, grace time.Duration) error {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && alive(pid); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			return fmt.Errorf("kubelab: process %d survived SIGKILL", pid)
		}
	}
	return nil
}

type mountEntry struct{ source, point, fstype, opts string }

// cgroupMounts lists the host's cgroup file systems (and the tmpfs holding
// v1 hierarchies) in mount order.
func cgroupMounts() ([]mountEntry, error) {
	all, err := readMounts()
	if err != nil {
		return nil, err
	}
	out := filterCgroupMounts(all)
	if len(out) == 0 {
		return nil, errors.New("kubelab: no cgroup file system mounted under /sys/fs/cgroup")
	}
	return out, nil
}

func filterCgroupMounts(all []mountEntry) []mountEntry {
	var out []mountEntry
	for _, m := range all {
		if (m.point == "/sys/fs/cgroup" || strings.HasPrefix(m.point, "/sys/fs/cgroup/")) &&
			(m.fstype == "cgroup" || m.fstype == "cgroup2" || m.fstype == "tmpfs") {
			out = append(out, m)
		}
	}
	return out
}

func readMounts() ([]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	return parseMounts(string(b)), nil
}

func parseMounts(text string) []mountEntry {
	var out []mountEntry
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		out = append(out, mountEntry{source: f[0], point: unescapeMount(f[1]), fstype: f[2], opts: f[3]})
	}
	return out
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

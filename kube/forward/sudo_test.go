package forward_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/internal/kubestage"
	"github.com/tether-dev/tether/kube/internal/labtest"
)

// The users of the sudo test: accounts every Debian-like system has, that
// log in nowhere and own no process of the test's before it starts.
const (
	sudoUser  = "nobody" // runs sudo; no home (/nonexistent)
	otherUser = "daemon" // another local user, who must not get in
)

// sudoTether runs tether as `sudo tether …` run by sudoUser does: root,
// with SUDO_UID, SUDO_GID and SUDO_USER of the user, in the laptop
// namespace, with the user's KUBECONFIG kept (sudo --preserve-env).
type sudoTether struct {
	t      *testing.T
	lab    *kubelab.Cluster
	bin    string
	socket string // the daemon's control socket
	dir    string // where sudo is run
	env    []string
	logs   []string // logs to show when a command fails
}

func (s *sudoTether) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := s.lab.LaptopCommand(ctx, s.bin, append([]string{"--socket", s.socket}, args...)...)
	cmd.Env, cmd.Dir = s.env, s.dir
	return cmd
}

func (s *sudoTether) run(args ...string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := s.cmd(ctx, args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("sudo tether %s: %v\n%s\n%s", strings.Join(args, " "), err, out, s.tails())
	}
	return string(out)
}

func (s *sudoTether) tails() string {
	var b strings.Builder
	for _, l := range s.logs {
		data, _ := os.ReadFile(l)
		fmt.Fprintf(&b, "%s:\n%s\n", l, lastLines(string(data), 20))
	}
	return b.String()
}

func (s *sudoTether) status() status {
	s.t.Helper()
	var st status
	out := s.run("status", "--json", "--no-activity")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		s.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// `sudo tether connect` by an unprivileged user whose kubeconfig
// authenticates with an exec plugin: the plugin runs only in the user's
// forwarder, a process of the user's uid, groups and no capabilities; the
// forwarder's socket is the user's alone (another user is refused); the
// root daemon, which connect starts, gets neither the token in its
// environment nor in its files; a Service answers through the VIF; quit
// stops the forwarder. Then the same without /run/user/UID: the
// forwarder's directory is /tmp/tether-UID.
func TestSudoConnectExecPlugin(t *testing.T) {
	c, admin, _ := labtest.Cluster(t)
	bin := tetherBin(t)
	for _, tool := range []string{"curl", "nc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	who, err := user.Lookup(sudoUser)
	if err != nil {
		t.Skipf("needs the user %s: %v", sudoUser, err)
	}
	other, err := user.Lookup(otherUser)
	if err != nil {
		t.Skipf("needs the user %s: %v", otherUser, err)
	}
	uid, _ := strconv.Atoi(who.Uid)
	gid, _ := strconv.Atoi(who.Gid)
	ctx := context.Background()
	install(t, c, admin)
	ns := labtest.Namespace(t, admin)
	if err := kubestage.DeployWeb(ctx, admin, ns, 1); err != nil {
		t.Fatal(err)
	}
	webIP, err := kubestage.ClusterIP(ctx, admin, ns, kubestage.Web)
	if err != nil {
		t.Fatal(err)
	}
	webURL := fmt.Sprintf("http://%s:%d/", webIP, kubestage.WebPort)
	token := developerToken(t, admin, ns)

	// Everything the user's processes use lies below a directory all can
	// traverse (t.TempDir's is root's alone); the binary is a copy there,
	// so that the test's processes are exactly those running it.
	base, err := os.MkdirTemp("", "tether-sudo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	tbin := filepath.Join(base, "tether")
	copyFile(t, bin, tbin, 0o755)
	home := filepath.Join(base, sudoUser)
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	runs := filepath.Join(home, "plugin-runs")
	plugin := filepath.Join(home, "credential-plugin")
	kubeconfig := filepath.Join(home, "kubeconfig")
	writeExecKubeconfig(t, c.UserKubeconfig("alice", true), kubeconfig, plugin)
	if err := os.WriteFile(plugin, []byte(`#!/bin/sh
# Who runs the plugin, and under which parent; then the developer's token.
echo "$(id -u) $(id -g) $PPID" >> `+runs+`
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"`+token+`"}}'
`), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{home, kubeconfig, plugin} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	runtimeDir, madeRuntimeDir := userRuntimeDir(t, uid, gid)
	fwdDir := filepath.Join(runtimeDir, "tether")
	fwdSocket := filepath.Join(fwdDir, "forward.sock")
	tmpFwdDir := tmpForwardDir(t, uid)

	daemonDir := t.TempDir()
	socket := filepath.Join(daemonDir, "daemon.sock")
	// KUBECONFIG relative to where sudo runs, as `cd ~ && sudo
	// --preserve-env=KUBECONFIG tether connect` keeps it: the forwarder
	// runs in /.
	sudo := &sudoTether{t: t, lab: c, bin: tbin, socket: socket, dir: base,
		env:  sudoEnv(who, "KUBECONFIG="+filepath.Join(sudoUser, "kubeconfig"), "TETHER_MANAGER="),
		logs: []string{socket + ".log", filepath.Join(fwdDir, "forward.log")}}
	// Runs first: whatever a failed test left of the daemon and the
	// forwarder ends with it.
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(sudo.tails())
		}
		qctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		if out, err := sudo.cmd(qctx, "quit", "--stop-daemon").CombinedOutput(); err != nil {
			t.Logf("quit --stop-daemon: %v\n%s", err, out)
		}
		for _, pid := range procsRunning(tbin) {
			t.Errorf("pid %d (%s) still runs after quit --stop-daemon: killing it", pid, cmdline(pid))
			stopProcess(pid)
		}
	})

	// No daemon runs: sudo tether connect starts one, as root.
	start := time.Now()
	out := sudo.run("--log-level", "debug", "connect")
	if !strings.Contains(out, "through a port-forward to pod traffic-manager-") {
		t.Fatalf("connect says:\n%s", out)
	}
	t.Logf("sudo tether connect (the daemon and the forwarder started) in %v", time.Since(start).Round(10*time.Millisecond))
	st := sudo.status()
	saUser := "system:serviceaccount:" + ns + ":" + execDev
	if !st.Connected || st.User != saUser || st.Forward == nil || !st.Forward.TLS || st.Manager != "unix://"+fwdSocket {
		t.Fatalf("status after connect: %+v forward %+v; want the session of %s through %s", st, st.Forward, saUser, fwdSocket)
	}
	fwd := st.Forward.PID
	forwarderIsUsers(t, fwd, who, tbin)
	pluginRanIn(t, runs, who, fwd)
	privateFiles(t, fwdDir, uid)
	if _, err := os.Lstat(tmpFwdDir); !os.IsNotExist(err) {
		t.Errorf("%s made although /run/user/%d is the user's: %v", tmpFwdDir, uid, err)
	}

	// The user opens their socket; another user is refused, by the
	// file system: the check proves something only with the first.
	if out, err := ncAs(fwdSocket, who); err != nil {
		t.Fatalf("%s cannot open their own socket: %v %s", sudoUser, err, out)
	}
	if out, err := ncAs(fwdSocket, other); err == nil || !strings.Contains(out, "ermission denied") {
		t.Fatalf("%s opened %s's forwarder socket: %v %s", otherUser, sudoUser, err, out)
	}

	// The daemon is root's, started by connect; the token is in none of
	// its files, nor in its environment or command line, nor in the
	// forwarder's record and log.
	var daemonPID int
	for _, pid := range procsRunning(tbin) {
		if pid != fwd {
			if daemonPID != 0 {
				t.Fatalf("two processes besides the forwarder run tether: %d (%s), %d (%s)", daemonPID, cmdline(daemonPID), pid, cmdline(pid))
			}
			daemonPID = pid
		}
	}
	if daemonPID == 0 || !strings.Contains(cmdline(daemonPID), " daemon ") {
		t.Fatalf("no daemon among tether's processes %v", procsRunning(tbin))
	}
	if ps := procStatus(t, daemonPID); strings.Fields(ps["Uid"])[0] != "0" {
		t.Fatalf("the daemon (pid %d) runs as uid %s, not root", daemonPID, ps["Uid"])
	}
	noToken := func(what string, data []byte) {
		if strings.Contains(string(data), token) {
			t.Errorf("%s holds the user's token", what)
		}
	}
	for _, f := range []string{"environ", "cmdline"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", daemonPID, f))
		if err != nil {
			t.Fatal(err)
		}
		noToken("the daemon's "+f, data)
	}
	files, _ := filepath.Glob(filepath.Join(daemonDir, "*"))
	files = append(files, filepath.Join(fwdDir, "forward.json"), filepath.Join(fwdDir, "forward.log"))
	for _, f := range files {
		if fi, err := os.Lstat(f); err == nil && fi.Mode().IsRegular() {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			noToken(f, data)
		}
	}
	noCredential(t, socket)
	if b, err := os.ReadFile(socket + ".owner"); err != nil || strings.TrimSpace(string(b)) != who.Uid {
		t.Errorf("the daemon's session owner: %q %v, want uid %s", b, err, who.Uid)
	}
	if out := sudo.run("sessions", "--json", "--no-activity"); !strings.Contains(out, `"user": "`+saUser+`"`) {
		t.Fatalf("the manager's sessions:\n%s", out)
	}
	curlWeb(t, c, webURL)

	// quit, as root under sudo, stops the user's forwarder.
	sudo.quit(fwd, fwdDir)

	// Without /run/user/UID (no login session: a system account, a
	// container) and no home of the user's (nobody's is /nonexistent), the
	// forwarder's directory is /tmp/tether-UID.
	if !madeRuntimeDir {
		t.Logf("%s is the machine's: the forwarder in /tmp is not tried", runtimeDir)
		return
	}
	if err := os.RemoveAll(runtimeDir); err != nil {
		t.Fatal(err)
	}
	sudo.logs[1] = filepath.Join(tmpFwdDir, "forward.log")
	sudo.run("connect")
	st = sudo.status()
	if !st.Connected || st.User != saUser || st.Forward == nil || st.Manager != "unix://"+filepath.Join(tmpFwdDir, "forward.sock") {
		t.Fatalf("status after connect without /run/user/%d: %+v forward %+v", uid, st, st.Forward)
	}
	forwarderIsUsers(t, st.Forward.PID, who, tbin)
	pluginRanIn(t, runs, who, fwd, st.Forward.PID)
	privateFiles(t, tmpFwdDir, uid)
	if out, err := ncAs(filepath.Join(tmpFwdDir, "forward.sock"), other); err == nil || !strings.Contains(out, "ermission denied") {
		t.Fatalf("%s opened %s's forwarder socket in /tmp: %v %s", otherUser, sudoUser, err, out)
	}
	curlWeb(t, c, webURL)
	sudo.quit(st.Forward.PID, tmpFwdDir)
}

// quit runs quit and checks that it stopped the forwarder pid, which
// removed its socket and record from dir.
func (s *sudoTether) quit(pid int, dir string) {
	s.t.Helper()
	if out := s.run("quit"); !strings.Contains(out, "Stopped the port-forward") {
		s.t.Fatalf("quit says:\n%s", out)
	}
	if !procGone(pid) {
		s.t.Fatalf("the forwarder (pid %d) still runs after quit", pid)
	}
	for _, f := range []string{"forward.sock", "forward.json"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			s.t.Errorf("%s is still there after quit: %v", f, err)
		}
	}
}

// forwarderIsUsers checks that pid runs the forwarder as u: uids, gids
// and supplementary groups u's, no capability left of root's.
func forwarderIsUsers(t *testing.T, pid int, u *user.User, exe string) {
	t.Helper()
	groups, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	ps := procStatus(t, pid)
	for field, want := range map[string]string{
		"Uid": strings.Repeat(u.Uid+" ", 4), "Gid": strings.Repeat(u.Gid+" ", 4), "Groups": strings.Join(sortedIDs(groups), " "),
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000",
	} {
		got := strings.Fields(ps[field])
		if field == "Groups" {
			got = sortedIDs(got)
		}
		if strings.Join(got, " ") != strings.TrimSpace(want) {
			t.Errorf("the forwarder (pid %d): %s %q, want %q", pid, field, ps[field], strings.TrimSpace(want))
		}
	}
	if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); link != exe {
		t.Errorf("pid %d runs %s, not the forwarder (%s)", pid, link, exe)
	}
}

// pluginRanIn checks that the exec plugin ran, and only as u, as a child
// of one of the forwarders: root's connect and the daemon never ran it.
func pluginRanIn(t *testing.T, runs string, u *user.User, forwarders ...int) {
	t.Helper()
	b, err := os.ReadFile(runs)
	if err != nil {
		t.Fatalf("the exec plugin never ran: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		var uid, gid string
		var parent int
		if _, err := fmt.Sscan(l, &uid, &gid, &parent); err != nil || uid != u.Uid || gid != u.Gid || !slices.Contains(forwarders, parent) {
			t.Errorf("the exec plugin ran as uid, gid, parent %q; want %s %s and one of the forwarders %v", l, u.Uid, u.Gid, forwarders)
		}
	}
	t.Logf("the exec plugin ran %d time(s), all as uid %s in the forwarders %v", len(lines), u.Uid, forwarders)
}

// privateFiles checks that the forwarder's directory, its socket, record
// and log are uid's, modes 0700 and 0600 (the log's 0640, as every log of
// tether's: the directory keeps others out).
func privateFiles(t *testing.T, dir string, uid int) {
	t.Helper()
	for name, mode := range map[string]os.FileMode{".": 0o700, "forward.sock": 0o600, "forward.json": 0o600, "forward.log": 0o640} {
		path := filepath.Join(dir, name)
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if owner := fi.Sys().(*syscall.Stat_t).Uid; int(owner) != uid || fi.Mode().Perm() != mode {
			t.Errorf("%s: uid %d mode %v, want uid %d mode %v", path, owner, fi.Mode().Perm(), uid, mode)
		}
		if name == "forward.sock" && fi.Mode().Type() != os.ModeSocket {
			t.Errorf("%s is no socket", path)
		}
	}
}

// curlWeb fetches url from the laptop namespace, through the VIF. The
// first try waits for kube-proxy, which programs a new Service a moment
// after its pods are ready.
func curlWeb(t *testing.T, c *kubelab.Cluster, url string) {
	t.Helper()
	labtest.Eventually(t, "curl "+url+" through the VIF", 30*time.Second, 250*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		body, err := c.LaptopCommand(ctx, "curl", "-sS", "--max-time", "10", url).CombinedOutput()
		if err != nil || !strings.Contains(string(body), "web-") {
			return fmt.Errorf("%v: %s", err, body)
		}
		return nil
	})
}

// execDev is the service account whose token the exec plugin hands out.
const execDev = "exec-dev"

// developerToken is a token of service account execDev in ns, bound to
// the chart's developer Role in the manager's namespace: what a cloud's
// exec plugin hands out, a short-lived token of a developer.
func developerToken(t *testing.T, admin kubernetes.Interface, ns string) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: execDev, Namespace: ns}}
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := "tether-developer-" + ns
	if err := kubestage.Bind(ctx, admin, kubestage.ManagerNamespace, binding,
		rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "tether-developer"},
		rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: execDev, Namespace: ns}); err != nil {
		t.Fatal(err)
	}
	// The manager's namespace outlives the release, and the binding with it.
	t.Cleanup(func() {
		_ = admin.RbacV1().RoleBindings(kubestage.ManagerNamespace).Delete(context.Background(), binding, metav1.DeleteOptions{})
	})
	expiry := int64(3600)
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, execDev,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// writeExecKubeconfig writes to path the cluster of the kubeconfig from,
// with a user that authenticates with the exec plugin only.
func writeExecKubeconfig(t *testing.T, from, path, plugin string) {
	t.Helper()
	src, err := clientcmd.LoadFromFile(from)
	if err != nil {
		t.Fatal(err)
	}
	cluster := src.Contexts[src.CurrentContext].Cluster
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubelab"] = src.Clusters[cluster]
	cfg.AuthInfos[execDev] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
		Command: plugin, APIVersion: "client.authentication.k8s.io/v1", InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
	}}
	cfg.Contexts[execDev+"@kubelab"] = &clientcmdapi.Context{Cluster: "kubelab", AuthInfo: execDev, Namespace: "default"}
	cfg.CurrentContext = execDev + "@kubelab"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
}

// userRuntimeDir is /run/user/UID, as logind makes it at login: mode
// 0700, owned by the user. It is made (and removed after) only when the
// machine has none (made); one that exists must be the user's, and its
// tether directory is left as found.
func userRuntimeDir(t *testing.T, uid, gid int) (dir string, made bool) {
	t.Helper()
	dir = fmt.Sprintf("/run/user/%d", uid)
	fi, err := os.Lstat(dir)
	switch {
	case os.IsNotExist(err):
		if err := os.MkdirAll("/run/user", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := os.RemoveAll(dir); err != nil {
				t.Errorf("removing %s: %v", dir, err)
			}
		})
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		return dir, true
	case err != nil:
		t.Fatal(err)
	case !fi.IsDir() || int(fi.Sys().(*syscall.Stat_t).Uid) != uid:
		t.Skipf("%s exists and is not uid %d's directory", dir, uid)
	}
	if _, err := os.Lstat(filepath.Join(dir, "tether")); err == nil {
		t.Skipf("%s/tether exists: uid %d may be using tether", dir, uid)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Join(dir, "tether")) })
	return dir, false
}

// tmpForwardDir is /tmp/tether-UID, the forwarder's directory of a user
// without a runtime directory or home; one there before the test is
// someone's, and the test skips. The forwarder makes it; the test removes
// it after.
func tmpForwardDir(t *testing.T, uid int) string {
	t.Helper()
	dir := fmt.Sprintf("/tmp/tether-%d", uid)
	if _, err := os.Lstat(dir); err == nil {
		t.Skipf("%s exists: uid %d may be using tether", dir, uid)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	return dir
}

// sudoEnv is the environment sudo gives a command run by u: the caller's
// (this test's), HOME root's, SUDO_* the user's, with extra kept.
func sudoEnv(u *user.User, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "SUDO_") && k != "HOME" && k != "XDG_RUNTIME_DIR" && k != "KUBECONFIG" && k != "TETHER_MANAGER" {
			env = append(env, kv)
		}
	}
	return append(env, append([]string{"HOME=/root", "SUDO_UID=" + u.Uid, "SUDO_GID=" + u.Gid, "SUDO_USER=" + u.Username}, extra...)...)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// procsRunning are the live processes whose executable is exe.
func procsRunning(exe string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && link == exe && !procGone(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
}

// procStatus are the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

// procGone: no process pid, or only its zombie.
func procGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command's closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || strings.HasPrefix(s[i+1:], " Z") || strings.HasPrefix(s[i+1:], " X")
}

// stopProcess ends pid: SIGTERM, and SIGKILL when it is still there after
// 10 s.
func stopProcess(pid int) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for range 100 {
		if procGone(pid) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// ncAs opens the Unix socket as u (OpenBSD netcat, -z: connect only).
func ncAs(socket string, u *user.User) (string, error) {
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nc", "-U", "-z", socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func sortedIDs(ids []string) []string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return slices.Compact(ids)
}

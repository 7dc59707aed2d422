package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/connectivity"

	"github.com/tether-dev/tether/internal/grpcproxy"
	"github.com/tether-dev/tether/internal/privsock"
	"github.com/tether-dev/tether/kube/forward"
	"github.com/tether-dev/tether/manager"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/wire"
)

// forwardStartTimeout bounds a forwarder's start: kubeconfig, exec
// plugins, the first port-forward and the manager's answer.
const forwardStartTimeout = 60 * time.Second

// kubeTarget is the kubeconfig context and manager namespace connect
// reaches the manager through.
type kubeTarget struct {
	kubeconfig, context, managerNamespace string
}

// forwardPaths are a user's forwarder files in their private directory
// (privsock.Dir): the socket the daemon dials, the record and the log.
type forwardPaths struct {
	dir, socket, state, log string
	uid, gid                int
	// groups are the user's supplementary groups for a forwarder that
	// `sudo tether connect` starts, as login gives them (initgroups).
	groups []int
	// env is the user's environment for a forwarder that `sudo tether
	// connect` starts; nil: this process's.
	env []string
}

// userForwardPaths are the paths of the user running tether; under sudo,
// of the user who ran sudo, so that root never holds their credentials.
func userForwardPaths() (forwardPaths, error) {
	p := forwardPaths{uid: os.Getuid(), gid: os.Getgid()}
	runtimeDir, home := os.Getenv("XDG_RUNTIME_DIR"), os.Getenv("HOME")
	if s := os.Getenv("SUDO_UID"); s != "" && os.Geteuid() == 0 {
		u, err := user.LookupId(s)
		if err != nil {
			return p, fmt.Errorf("SUDO_UID %s: %w", s, err)
		}
		p.uid, _ = strconv.Atoi(u.Uid)
		p.gid, _ = strconv.Atoi(u.Gid)
		p.groups = userGroups(u, p.gid)
		home, runtimeDir = u.HomeDir, ""
		if d := "/run/user/" + u.Uid; privsock.Owned(d, p.uid) == nil {
			runtimeDir = d
		}
		p.env = []string{"HOME=" + home, "USER=" + u.Username, "LOGNAME=" + u.Username, "PATH=" + os.Getenv("PATH")}
		if runtimeDir != "" {
			p.env = append(p.env, "XDG_RUNTIME_DIR="+runtimeDir)
		}
		if k := os.Getenv("KUBECONFIG"); k != "" {
			p.env = append(p.env, "KUBECONFIG="+absKubeconfig(k))
		}
	}
	p.dir = privsock.Dir(runtimeDir, home, p.uid)
	p.socket, p.state, p.log = filepath.Join(p.dir, "forward.sock"), filepath.Join(p.dir, "forward.json"), filepath.Join(p.dir, "forward.log")
	return p, nil
}

// absKubeconfig is the list of KUBECONFIG with each file made absolute:
// the forwarder runs in /, not where connect was run.
func absKubeconfig(list string) string {
	files := filepath.SplitList(list)
	for i, f := range files {
		if f != "" {
			if abs, err := filepath.Abs(f); err == nil {
				files[i] = abs
			}
		}
	}
	return strings.Join(files, string(filepath.ListSeparator))
}

// userGroups are u's group ids, its supplementary groups included; the
// primary group alone when the group database cannot be read: fewer
// rights than the user has, never root's.
func userGroups(u *user.User, gid int) []int {
	ids, err := u.GroupIds()
	if err != nil {
		return []int{gid}
	}
	groups := []int{gid}
	for _, id := range ids {
		if g, err := strconv.Atoi(id); err == nil && g != gid {
			groups = append(groups, g)
		}
	}
	return groups
}

// managerAddr is the daemon's manager address for a forwarder's socket.
func (p forwardPaths) managerAddr() string { return "unix://" + p.socket }

// forwardState is a running forwarder's record, for connect (reuse),
// quit (stop) and status (where the session goes).
type forwardState struct {
	PID        int    `json:"pid"`
	Socket     string `json:"socket"`
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Context    string `json:"context"`
	Namespace  string `json:"namespace"` // the manager's
	// ContextNamespace is the kubeconfig context's namespace, the
	// session's when connect names none (kubectl's default).
	ContextNamespace string    `json:"contextNamespace,omitempty"`
	Pod              string    `json:"pod"`
	TLS              bool      `json:"tls"`
	Started          time.Time `json:"started"`
}

// readForwardState is the user's forwarder record, and whether that
// forwarder lives. Only a record in a directory of the user's counts:
// under sudo root would otherwise signal, and hand the daemon, whatever
// another user put in a /tmp/tether-UID made before the user's.
func readForwardState(p forwardPaths) (forwardState, bool) {
	var st forwardState
	if privsock.Owned(p.dir, p.uid) != nil {
		return st, false
	}
	b, err := os.ReadFile(p.state)
	if err != nil || json.Unmarshal(b, &st) != nil || st.PID <= 0 {
		return st, false
	}
	return st, processAlive(st.PID)
}

func writeForwardState(path string, st forwardState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// newForwardCmd is the forwarder: a process of the user that holds their
// kubeconfig credentials and serves the manager, through a port-forward
// and with their identity, on a socket only they (and root) can open.
// `tether connect` starts it; it runs until SIGTERM (`tether quit`).
func newForwardCmd(g *globals) *cobra.Command {
	var t kubeTarget
	var readyFD int
	cmd := &cobra.Command{
		Use:    "forward",
		Short:  "Serve the traffic manager through an API-server port-forward with your kubeconfig identity (started by connect)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ready io.WriteCloser = nopWriteCloser{io.Discard}
			if readyFD > 0 {
				ready = os.NewFile(uintptr(readyFD), "ready")
			}
			err := runForward(cmd.Context(), g, t, ready)
			if err != nil {
				fmt.Fprintf(ready, "%v\n", err)
			}
			ready.Close()
			return err
		},
	}
	f := cmd.Flags()
	kubeFlags(f.StringVar, &t)
	f.IntVar(&readyFD, "ready-fd", 0, "write one line to this descriptor when serving (\"ok\") or failing (the error)")
	return cmd
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// kubeFlags defines the kubeconfig flags connect and forward share.
func kubeFlags(str func(*string, string, string, string), t *kubeTarget) {
	str(&t.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, else ~/.kube/config, as kubectl)")
	str(&t.context, "context", "", "kubeconfig context (default: the current context)")
	ns := os.Getenv("TETHER_MANAGER_NAMESPACE")
	if ns == "" {
		ns = manager.DefaultNamespace
	}
	str(&t.managerNamespace, "manager-namespace", ns, "manager.namespace: namespace of the traffic manager's Service (env TETHER_MANAGER_NAMESPACE)")
}

func runForward(ctx context.Context, g *globals, t kubeTarget, ready io.Writer) error {
	paths, err := userForwardPaths()
	if err != nil {
		return err
	}
	// The directory first: the log goes into it, readable by the user only.
	if err := privsock.MkdirPrivate(paths.dir, os.Getuid()); err != nil {
		return err
	}
	closeLog, err := g.openLog(paths.log)
	if err != nil {
		return err
	}
	defer closeLog()
	base := g.logger() // kube/forward and grpcproxy name their own component
	log := base.With("component", "forwarder")
	kube, err := forward.Load(forward.Kubeconfig{Path: t.kubeconfig, Context: t.context})
	if err != nil {
		return err
	}
	st := forwardState{PID: os.Getpid(), Socket: paths.socket, Kubeconfig: t.kubeconfig, Context: kube.Context, Namespace: t.managerNamespace, ContextNamespace: kube.Namespace, Started: time.Now().UTC()}
	var stMu sync.Mutex // guards st; gRPC's dialer records each new pod
	onPod := func(pod string) {
		stMu.Lock()
		defer stMu.Unlock()
		st.Pod = pod
		if err := writeForwardState(paths.state, st); err != nil {
			log.Warn("recording the forwarder's state failed", "error", err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, forwardStartTimeout)
	defer cancel()
	fwd, err := forward.New(sctx, forward.Config{Kube: kube, Namespace: t.managerNamespace, Log: base, OnPod: onPod})
	if err != nil {
		return err
	}
	stMu.Lock()
	st.TLS = fwd.TLS()
	stMu.Unlock()
	defer fwd.Close()
	if err := waitConnReady(sctx, fwd); err != nil {
		return fmt.Errorf("the traffic manager in namespace %s does not answer through the port-forward: %w (log: %s)", t.managerNamespace, err, paths.log)
	}
	ln, err := privsock.Listen(paths.socket)
	if err != nil {
		return err
	}
	// The daemon connects without credentials; whatever identity a caller
	// puts on a call is replaced by the user's.
	proxy := grpcproxy.New(fwd.ClientConn(), []string{wire.MDAuthorization}, base, tunnel.ServerOptions(tunnel.Keepalive{})...)
	onPod(fwd.Pod())
	served := make(chan error, 1)
	go func() { served <- proxy.Serve(ln) }()
	log.Info("forwarder started", "socket", paths.socket, "context", kube.Context, "manager.namespace", t.managerNamespace, "pod", fwd.Pod(), "tls", fwd.TLS())
	fmt.Fprintln(ready, "ok")
	select {
	case err = <-served:
		proxy.Close()
	case <-ctx.Done():
		proxy.Close()
		err = <-served
	}
	os.Remove(paths.socket)
	os.Remove(paths.state)
	log.Info("forwarder stopped")
	return err
}

func waitConnReady(ctx context.Context, fwd *forward.Forwarder) error {
	cc := fwd.ClientConn()
	cc.Connect()
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("still %s after %v", strings.ToLower(s.String()), forwardStartTimeout)
		}
	}
}

// ensureForwarder returns the manager address of a forwarder for t: the
// running one when it serves the same context and namespace, else a new
// one. started says whether this call started it.
func ensureForwarder(ctx context.Context, g *globals, t kubeTarget) (addr string, started bool, err error) {
	paths, err := userForwardPaths()
	if err != nil {
		return "", false, err
	}
	// Another user's directory (one made first in /tmp) is refused before
	// anything in it is believed: the forwarder would refuse it too.
	if err := privsock.Owned(paths.dir, paths.uid); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("the forwarder's directory: %w", err)
	}
	if t.kubeconfig != "" {
		// The forwarder runs in /.
		if t.kubeconfig, err = filepath.Abs(t.kubeconfig); err != nil {
			return "", false, err
		}
	}
	ctxName := t.context
	if paths.env == nil {
		// The current context, when none is named; under sudo only the
		// forwarder reads the user's kubeconfig.
		kube, err := forward.Load(forward.Kubeconfig{Path: t.kubeconfig, Context: t.context})
		if err != nil {
			return "", false, err
		}
		ctxName = kube.Context
	}
	if st, alive := readForwardState(paths); alive && socketAnswers(paths.socket) {
		if (ctxName == "" || st.Context == ctxName) && st.Namespace == t.managerNamespace && st.Kubeconfig == t.kubeconfig {
			return paths.managerAddr(), false, nil
		}
		return "", false, fmt.Errorf("a forwarder (pid %d) serves context %s, namespace %s: `tether quit` first", st.PID, st.Context, st.Namespace)
	}
	if err := startForwarder(ctx, g, t, paths); err != nil {
		return "", false, err
	}
	return paths.managerAddr(), true, nil
}

func socketAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// startForwarder starts `tether forward` as the user in a session of its
// own (it logs to its private directory) and waits for its ready line.
func startForwarder(ctx context.Context, g *globals, t kubeTarget, p forwardPaths) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("starting the forwarder: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("starting the forwarder: %w", err)
	}
	defer r.Close()
	args := []string{"--log-level", g.logLevel, "forward", "--ready-fd", "3", "--manager-namespace", t.managerNamespace}
	if t.kubeconfig != "" {
		args = append(args, "--kubeconfig", t.kubeconfig)
	}
	if t.context != "" {
		args = append(args, "--context", t.context)
	}
	cmd := exec.Command(exe, args...)
	cmd.ExtraFiles = []*os.File{w}
	cmd.Dir = "/"
	cmd.SysProcAttr = detached()
	if p.env != nil {
		// `sudo tether connect`: the user's credentials are theirs to use,
		// root runs none of their exec plugins.
		cmd.Env = p.env
		runAs(cmd, p.uid, p.gid, p.groups)
	} else if k := os.Getenv("KUBECONFIG"); k != "" {
		// The last KUBECONFIG wins.
		cmd.Env = append(os.Environ(), "KUBECONFIG="+absKubeconfig(k))
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("starting the forwarder: %w", err)
	}
	// Reaps a forwarder that fails while connect runs; one that serves
	// outlives connect and is left to init.
	go func() { _ = cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		if s == "ok" {
			return nil
		}
		if s == "" {
			s = "it exited; see " + p.log
		}
		return fmt.Errorf("the forwarder to the cluster failed: %s", s)
	case <-time.After(forwardStartTimeout + 5*time.Second):
		_ = cmd.Process.Kill()
		return fmt.Errorf("the forwarder did not start within %v: see %s", forwardStartTimeout, p.log)
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return ctx.Err()
	}
}

// stopForwarder ends the user's forwarder, if one runs, and waits for it.
func stopForwarder() (bool, error) {
	paths, err := userForwardPaths()
	if err != nil {
		return false, err
	}
	if privsock.Owned(paths.dir, paths.uid) != nil {
		// None, or not the user's to signal from or clean up.
		return false, nil
	}
	st, alive := readForwardState(paths)
	if !alive || !socketAnswers(paths.socket) {
		// No forwarder, or a record that outlived it (the pid may be
		// another process's by now).
		os.Remove(paths.state)
		return false, nil
	}
	if err := terminate(st.PID); err != nil {
		return false, fmt.Errorf("stopping the forwarder (pid %d): %w", st.PID, err)
	}
	for range 50 {
		if !processAlive(st.PID) {
			return true, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true, fmt.Errorf("the forwarder (pid %d) did not stop within 5s", st.PID)
}

// forwardedVia is the forwarder's record when the daemon's manager is the
// user's forwarder.
func forwardedVia(managerAddr string) (forwardState, bool) {
	paths, err := userForwardPaths()
	if err != nil || managerAddr != paths.managerAddr() {
		return forwardState{}, false
	}
	return readForwardState(paths)
}

// forwardStart stops a forwarder that connect started when the connect
// fails; nil: connect goes to --manager.
type forwardStart struct {
	started, kept bool
}

func (f *forwardStart) keep() {
	if f != nil {
		f.kept = true
	}
}

// contextNamespace is the namespace of the forwarder's kubeconfig context,
// from its record (written before it said ready); empty when unknown.
func (f *forwardStart) contextNamespace() string {
	paths, err := userForwardPaths()
	if err != nil {
		return ""
	}
	st, _ := readForwardState(paths)
	return st.ContextNamespace
}

func (f *forwardStart) undo() {
	if f != nil && f.started && !f.kept {
		_, _ = stopForwarder()
	}
}

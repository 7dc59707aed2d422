package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Addresses of the lab. Everything lives in the benchmark range 198.18.0.0/15.
var (
	clientNet = netip.MustParsePrefix("198.18.1.0/24") // client <-> mgr link
	podNet    = netip.MustParsePrefix("198.18.2.0/24") // the "pod network"
	mgrIP     = netip.MustParseAddr("198.18.1.2")      // Mgr on the client link
	mgrPodIP  = netip.MustParseAddr("198.18.2.1")      // Mgr on the pod link
	podIP     = netip.MustParseAddr("198.18.2.2")
)

const (
	defaultPrefix = "netlab-"
	closeGrace    = 3 * time.Second // SIGTERM -> SIGKILL in Close
	stopGrace     = 5 * time.Second // SIGTERM -> SIGKILL in Proc.Stop
	cmdWaitDelay  = 3 * time.Second // see exec.Cmd.WaitDelay
)

// Options configures [New].
type Options struct {
	// Prefix starts every namespace name; a random 6-hex-digit run id and the role follow,
	// e.g. "netlab-3fa2c1-client". Letters, digits, '.', '_' and '-' only; default "netlab-".
	Prefix string
	// ExtraClients adds client namespaces Client2, Client3, ... (198.18.1.3, .4, ...) sharing
	// the client link through a bridge in Mgr.
	ExtraClients int
}

// Lab is a set of network namespaces wired as described in the package comment.
// The exported fields are set by [New] and must not be changed. The zero Lab has no
// namespaces of its own: it starts, runs and (Close) ends processes in namespaces made by
// others, such as internal/kubelab's laptops.
type Lab struct {
	Client, Mgr, Pod                 string // namespace names
	ClientIP, MgrIP, MgrPodIP, PodIP netip.Addr
	PodNet                           netip.Prefix
	Clients                          []string     // all client namespaces; Clients[0] == Client
	ClientIPs                        []netip.Addr // address of Clients[i]

	namespaces []string // created by New, in creation order; immutable after New

	mu     sync.Mutex // guards closed, procs
	closed bool
	procs  []*Proc
}

// New builds a lab. It needs root; see [Available]. If it fails it removes what it built.
func New(opts Options) (lab *Lab, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = defaultPrefix
	}
	if !validName(prefix) {
		return nil, fmt.Errorf("netlab: invalid namespace prefix %q: use letters, digits, '.', '_', '-'", prefix)
	}
	if opts.ExtraClients < 0 || opts.ExtraClients > 200 {
		return nil, fmt.Errorf("netlab: ExtraClients %d out of range 0..200", opts.ExtraClients)
	}
	var id [3]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("netlab: run id: %w", err)
	}
	run := prefix + hex.EncodeToString(id[:]) + "-"

	l := &Lab{
		Client:   run + "client",
		Mgr:      run + "mgr",
		Pod:      run + "pod",
		ClientIP: netip.MustParseAddr("198.18.1.1"),
		MgrIP:    mgrIP,
		MgrPodIP: mgrPodIP,
		PodIP:    podIP,
		PodNet:   podNet,
	}
	l.Clients = []string{l.Client}
	l.ClientIPs = []netip.Addr{l.ClientIP}
	next := mgrIP.Next() // 198.18.1.3
	for i := range opts.ExtraClients {
		l.Clients = append(l.Clients, fmt.Sprintf("%sclient%d", run, i+2))
		l.ClientIPs = append(l.ClientIPs, next)
		next = next.Next()
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
			lab = nil
		}
	}()
	if err := l.build(); err != nil {
		return nil, err
	}
	return l, nil
}

// build creates and wires the namespaces; see the package comment.
func (l *Lab) build() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all := append(append([]string{}, l.Clients...), l.Mgr, l.Pod)
	for _, ns := range all {
		if _, err := l.ip(ctx, "netns", "add", ns); err != nil {
			return err
		}
		l.namespaces = append(l.namespaces, ns)
		if _, err := l.ip(ctx, "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}

	plen := clientNet.Bits()
	steps := [][]string{}
	add := func(args ...string) { steps = append(steps, args) }
	if len(l.Clients) == 1 {
		// A plain veth pair, like the shell lab: no bridge in the benchmark path.
		add("link", "add", "cl0", "netns", l.Client, "type", "veth", "peer", "name", "mg0", "netns", l.Mgr)
		add("-n", l.Mgr, "addr", "add", prefixString(mgrIP, plen), "dev", "mg0")
		add("-n", l.Mgr, "link", "set", "mg0", "up")
	} else {
		add("-n", l.Mgr, "link", "add", "br0", "type", "bridge")
		add("-n", l.Mgr, "addr", "add", prefixString(mgrIP, plen), "dev", "br0")
		add("-n", l.Mgr, "link", "set", "br0", "up")
		for i, ns := range l.Clients {
			port := fmt.Sprintf("mgc%d", i)
			add("link", "add", "cl0", "netns", ns, "type", "veth", "peer", "name", port, "netns", l.Mgr)
			add("-n", l.Mgr, "link", "set", port, "master", "br0")
			add("-n", l.Mgr, "link", "set", port, "up")
		}
	}
	for i, ns := range l.Clients {
		add("-n", ns, "addr", "add", prefixString(l.ClientIPs[i], plen), "dev", "cl0")
		add("-n", ns, "link", "set", "cl0", "up")
	}
	add("link", "add", "mg1", "netns", l.Mgr, "type", "veth", "peer", "name", "pd0", "netns", l.Pod)
	add("-n", l.Mgr, "addr", "add", prefixString(mgrPodIP, podNet.Bits()), "dev", "mg1")
	add("-n", l.Mgr, "link", "set", "mg1", "up")
	add("-n", l.Pod, "addr", "add", prefixString(podIP, podNet.Bits()), "dev", "pd0")
	add("-n", l.Pod, "link", "set", "pd0", "up")
	for _, args := range steps {
		if _, err := l.ip(ctx, args...); err != nil {
			return err
		}
	}

	// A new namespace inherits ip_forward from the host; the lab must not forward.
	for _, ns := range all {
		if err := l.sysctl(ns, "net.ipv4.ip_forward", "0"); err != nil {
			return err
		}
	}
	for _, ns := range append(append([]string{}, l.Clients...), l.Mgr) {
		if err := l.sysctl(ns, "net.ipv4.tcp_tw_reuse", "1"); err != nil {
			return err
		}
	}

	// Sanity: no client reaches the pod network; the links are there.
	for _, ns := range l.Clients {
		if _, err := l.ip(ctx, "-n", ns, "route", "get", podIP.String()); err == nil {
			return fmt.Errorf("netlab: %s unexpectedly has a route to %s", ns, podIP)
		}
		if _, err := l.ip(ctx, "-n", ns, "route", "get", mgrIP.String()); err != nil {
			return err
		}
	}
	_, err := l.ip(ctx, "-n", l.Mgr, "route", "get", podIP.String())
	return err
}

// KernelRoute adds (on) or removes (off) a kernel-routed path from the first client to the pod
// network through Mgr, for a baseline benchmark without the software under test: ip_forward in
// Mgr, route PodNet via MgrIP in Client, route 198.18.1.0/24 via MgrPodIP in Pod. Turning it on
// replaces any route to PodNet the client has (such as a TUN's). Both directions are idempotent.
func (l *Lab) KernelRoute(on bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clientRoute := []string{podNet.String(), "via", mgrIP.String(), "dev", "cl0"}
	podRoute := []string{clientNet.String(), "via", mgrPodIP.String(), "dev", "pd0"}
	if on {
		if err := l.sysctl(l.Mgr, "net.ipv4.ip_forward", "1"); err != nil {
			return err
		}
		if _, err := l.ip(ctx, append([]string{"-n", l.Client, "route", "replace"}, clientRoute...)...); err != nil {
			return err
		}
		_, err := l.ip(ctx, append([]string{"-n", l.Pod, "route", "replace"}, podRoute...)...)
		return err
	}
	var errs []error
	for _, del := range [][]string{
		append([]string{"-n", l.Client, "route", "del"}, clientRoute...),
		append([]string{"-n", l.Pod, "route", "del"}, podRoute...),
	} {
		// "No such process" (ESRCH) is the kernel's way of saying the route is not there.
		if out, err := l.ip(ctx, del...); err != nil && !strings.Contains(out, "No such process") {
			errs = append(errs, err)
		}
	}
	errs = append(errs, l.sysctl(l.Mgr, "net.ipv4.ip_forward", "0"))
	return errors.Join(errs...)
}

// Close kills the processes started with [Lab.Start] (SIGTERM to each process group, SIGKILL
// after 3s) and deletes the namespaces. It is idempotent; later calls return nil.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()

	// Processes first: deleting a namespace's name does not end the processes inside it.
	for _, p := range procs {
		p.signalGroup(syscall.SIGTERM)
	}
	deadline := time.NewTimer(closeGrace)
	defer deadline.Stop()
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline.C:
			// Later processes get no more grace: the deadline is shared.
			deadline.Reset(0)
		}
		p.signalGroup(syscall.SIGKILL) // the leader if it ignored SIGTERM, and stragglers
		<-p.done
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for i := len(l.namespaces) - 1; i >= 0; i-- {
		// Deleting a namespace destroys the veth ends inside it, and so their peers.
		if _, err := l.ip(ctx, "netns", "delete", l.namespaces[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Command returns `ip netns exec NS name args...` in a process group of its own. Cancelling
// ctx kills the whole group; the command belongs to the caller (Close does not touch it).
func (l *Lab) Command(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = newProcessGroup()
	cmd.Cancel = func() error { return killGroup(cmd.Process, syscall.SIGKILL) }
	// Grandchildren may keep output pipes open after the group leader died.
	cmd.WaitDelay = cmdWaitDelay
	return cmd
}

// Run runs name in namespace ns and returns its combined output. The error includes the output.
func (l *Lab) Run(ctx context.Context, ns string, name string, args ...string) (string, error) {
	out, err := l.Command(ctx, ns, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netlab: %s in %s: %w: %s",
			strings.Join(append([]string{name}, args...), " "), ns, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Start starts name in namespace ns in the background, with stdout and stderr appended to
// logPath (created if needed, with its directory). Close kills it.
func (l *Lab) Start(ns string, logPath string, name string, args ...string) (*Proc, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("netlab: start %s: %w", name, err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("netlab: start %s: %w", name, err)
	}
	// The child has its own descriptor once started.
	defer logf.Close()

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("netlab: start %s in %s: lab is closed", name, ns)
	}
	cmd := l.Command(context.Background(), ns, name, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netlab: start %s in %s: %w", name, ns, err)
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	// Owned by p: ends when the process exits; Stop and Close wait for it.
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.procs = append(l.procs, p)
	return p, nil
}

// Proc is a background process started by [Lab.Start]. It leads its own process group.
type Proc struct {
	Cmd *exec.Cmd

	done chan struct{} // closed once Cmd.Wait returned; err is set before
	err  error
}

// Signal sends sig to the process (not to the rest of its group).
func (p *Proc) Signal(sig os.Signal) error {
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("netlab: signal %d: %w", p.Cmd.Process.Pid, err)
	}
	return nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to exit and returns its exit error (nil for
// status 0), or an error if it is still running after timeout.
func (p *Proc) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		return fmt.Errorf("netlab: %s (pid %d) still running after %v", p.name(), p.Cmd.Process.Pid, timeout)
	}
}

// Stop sends SIGTERM to the process group, waits up to 5s, then SIGKILLs the group. It returns
// nil if the process exited with status 0 or because of the SIGTERM, the exit error if it
// failed otherwise, and an error if it had to be killed. Stragglers left in the group are
// killed in every case. Stop after the process exited on its own just returns its exit error.
func (p *Proc) Stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.signalGroup(syscall.SIGTERM)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.done:
		p.signalGroup(syscall.SIGKILL)
		if exitedBy(p.err, syscall.SIGTERM) {
			return nil
		}
		return p.err
	case <-t.C:
		p.signalGroup(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("netlab: %s (pid %d) did not exit within %v of SIGTERM; killed",
			p.name(), p.Cmd.Process.Pid, stopGrace)
	}
}

// name is the program run in the namespace (Cmd runs `ip netns exec NS name ...`).
func (p *Proc) name() string {
	if len(p.Cmd.Args) > 4 {
		return p.Cmd.Args[4]
	}
	return p.Cmd.Path
}

// signalGroup sends sig to the process group; errors (typically ESRCH: nobody left) are moot.
func (p *Proc) signalGroup(sig syscall.Signal) {
	_ = killGroup(p.Cmd.Process, sig)
}

// exitedBy reports whether err says the process was ended by sig.
func exitedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// Listen is net.Listen with the socket created in namespace ns.
func (l *Lab) Listen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := l.Do(ns, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket is net.ListenPacket with the socket created in namespace ns.
func (l *Lab) ListenPacket(ns, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := l.Do(ns, func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// DialContext dials addr (an IP address and port: name lookups would use the host's resolver)
// from namespace ns.
func (l *Lab) DialContext(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := l.Do(ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ip runs iproute2 in the host namespace (namespaces are picked with -n or netns arguments)
// and returns its combined output.
func (l *Lab) ip(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netlab: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// sysctl writes a net.* sysctl of namespace ns (/proc/sys/net is per network namespace of the
// writing thread).
func (l *Lab) sysctl(ns, key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	err := l.Do(ns, func() error { return os.WriteFile(path, []byte(value), 0) })
	if err != nil {
		return fmt.Errorf("netlab: sysctl %s=%s in %s: %w", key, value, ns, err)
	}
	return nil
}

func prefixString(a netip.Addr, bits int) string {
	return netip.PrefixFrom(a, bits).String()
}

func validName(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return s != "" && s[0] != '.'
}

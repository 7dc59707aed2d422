package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/netlab"
)

// tetherBin is the binary under test, built once by TestMain.
var tetherBin string

func TestMain(m *testing.M) {
	code := func() int {
		if netlab.Available() == nil {
			dir, err := os.MkdirTemp("", "tether-e2e-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			tetherBin = filepath.Join(dir, "tether")
			out, err := exec.Command("go", "build", "-o", tetherBin, "../cmd/tether").CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "build tether: %v\n%s", err, out)
				return 1
			}
			// 10,000-connection runs need more descriptors than the
			// default hard limit; root may raise it, children inherit it.
			lim := syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// Ports of the pod's servers.
const (
	portHTTP    = 8080
	portSink    = 9000
	portEcho    = 9001
	portUDPEcho = 9002
	portHold    = 9003
	portFirst   = 9004
	portRefused = 9999
	portMgr     = 8081
)

// env is a running lab: pod servers, a manager, a connected daemon.
type env struct {
	t      testing.TB
	lab    *netlab.Lab
	dir    string
	socket string
	tun    string
	mgr    *netlab.Proc
	daemon *netlab.Proc
	stops  []func()
}

type envOptions struct {
	mgrArgs []string
	// prepare runs before the manager starts (e.g. to write its files
	// into e.dir); nil for nothing.
	prepare func(e *env)
	// mgrArgsFunc and connectArgsFunc add arguments that depend on the env
	// (paths in e.dir).
	mgrArgsFunc     func(e *env) []string
	connectArgsFunc func(e *env) []string
	// noDaemon leaves the daemon to the test (nothing started, nothing
	// connected).
	noDaemon bool
}

func requireLab(t testing.TB) {
	t.Helper()
	if err := netlab.Available(); err != nil {
		t.Skipf("end-to-end lab unavailable (needs root, ip and /dev/net/tun): %v", err)
	}
	for _, tool := range []string{"curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

// newEnv builds the lab, starts the pod's servers, the manager and the
// daemon, and connects. Everything is removed at the end of the test.
func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	requireLab(t)
	lab, err := netlab.New(netlab.Options{Prefix: "te"})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, lab: lab, dir: t.TempDir(), tun: "tt" + rand.Text()[:8]}
	e.socket = filepath.Join(e.dir, "daemon.sock")
	t.Cleanup(e.close)
	e.startPodServers()
	if opts.prepare != nil {
		opts.prepare(e)
	}
	mgrArgs, connectArgs := opts.mgrArgs, []string(nil)
	if opts.mgrArgsFunc != nil {
		mgrArgs = append(mgrArgs, opts.mgrArgsFunc(e)...)
	}
	if opts.connectArgsFunc != nil {
		connectArgs = append(connectArgs, opts.connectArgsFunc(e)...)
	}
	e.startManager(mgrArgs...)
	if opts.noDaemon {
		return e
	}
	e.startDaemon()
	e.connect(connectArgs...)
	return e
}

func (e *env) close() {
	for _, stop := range e.stops {
		stop()
	}
	if e.t.Failed() {
		logs, _ := filepath.Glob(filepath.Join(e.dir, "*.log"))
		for _, name := range logs {
			if b, err := os.ReadFile(name); err == nil {
				e.t.Logf("=== %s\n%s", filepath.Base(name), lastLines(string(b), 40))
			}
		}
	}
	e.lab.Close()
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (e *env) podAddr(port int) string {
	return netip.AddrPortFrom(e.lab.PodIP, uint16(port)).String()
}

func (e *env) mgrAddr() string {
	return netip.AddrPortFrom(e.lab.MgrIP, portMgr).String()
}

func (e *env) startPodServers() {
	t := e.t
	listen := func(port int) net.Listener {
		ln, err := e.lab.Listen(e.lab.Pod, "tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	e.stops = append(e.stops,
		netlab.ServeHTTP(listen(portHTTP), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from the pod, %s\n", r.RemoteAddr)
		})),
		netlab.ServeSink(listen(portSink)),
		netlab.ServeEcho(listen(portEcho)),
		serveHold(listen(portHold)),
		serveFirstByte(listen(portFirst)),
	)
	pc, err := e.lab.ListenPacket(e.lab.Pod, "udp", fmt.Sprintf(":%d", portUDPEcho))
	if err != nil {
		t.Fatal(err)
	}
	e.stops = append(e.stops, netlab.ServeUDPEcho(pc))
	dns, err := e.lab.ListenPacket(e.lab.Pod, "udp", ":53")
	if err != nil {
		t.Fatal(err)
	}
	e.stops = append(e.stops, netlab.ServeDNS(dns, map[string]netip.Addr{
		"svc.test.":                      netip.MustParseAddr("198.18.2.77"),
		"web.default.svc.cluster.local.": netip.MustParseAddr("198.18.2.78"),
		"web.shop.svc.cluster.local.":    netip.MustParseAddr("198.18.2.79"),
	}))
}

// startManager runs the manager on the lab's manager address; without a
// token file (development mode) that needs --insecure-listen-any.
func (e *env) startManager(extra ...string) {
	args := append([]string{"manager", "--listen", e.mgrAddr(), "--subnet", e.lab.PodNet.String(), "--log-level", "debug"}, extra...)
	if !slices.Contains(extra, "--token-file") {
		args = append(args, "--insecure-listen-any")
	}
	p, err := e.lab.Start(e.lab.Mgr, filepath.Join(e.dir, "manager.log"), tetherBin, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mgr = p
	e.waitTCP(e.lab.Client, e.mgrAddr())
}

func (e *env) startDaemon() {
	p, err := e.lab.Start(e.lab.Client, filepath.Join(e.dir, "daemon.log"), tetherBin,
		"--socket", e.socket, "--log-level", "debug", "daemon", "--tun-name", e.tun)
	if err != nil {
		e.t.Fatal(err)
	}
	e.daemon = p
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := e.tether("--no-activity", "status"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("daemon did not answer within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restartDaemon stops the daemon with SIGTERM, starts a new one and waits
// until it has resumed its session by itself.
func (e *env) restartDaemon() {
	e.t.Helper()
	if err := e.daemon.Stop(); err != nil {
		e.t.Fatal(err)
	}
	e.startDaemon()
	e.waitResumed()
}

// waitResumed waits until a restarted daemon is connected again.
func (e *env) waitResumed() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.status()["connected"] != true {
		if time.Now().After(deadline) {
			e.t.Fatal("the restarted daemon did not resume its session") // close prints the logs
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) connect(extra ...string) {
	if out, err := e.tether(append([]string{"connect", "--manager", e.mgrAddr()}, extra...)...); err != nil {
		e.t.Fatalf("connect: %v\n%s", err, out)
	}
}

// waitTCP waits until addr accepts connections from namespace ns.
func (e *env) waitTCP(ns, addr string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := e.lab.DialContext(ctx, ns, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s not accepting from %s: %v", addr, ns, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tether runs the CLI in the client namespace.
func (e *env) tether(args ...string) (string, error) {
	return e.run(e.lab.Client, tetherBin, append([]string{"--socket", e.socket}, args...)...)
}

func (e *env) run(ns, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return e.lab.Run(ctx, ns, name, args...)
}

// status returns `tether status --json`.
func (e *env) status() map[string]any {
	out, err := e.tether("--no-activity", "status", "--json")
	if err != nil {
		e.t.Fatalf("status: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		e.t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	return m
}

// serveHold accepts connections and keeps them open, idle, until stop.
func serveHold(ln net.Listener) func() {
	return netlab.ServeConns(ln, func(c net.Conn) { c.Read(make([]byte, 1)) })
}

// serveFirstByte writes one byte on accept, then waits for the client to
// close: the server of the connection-latency benchmark.
func serveFirstByte(ln net.Listener) func() {
	return netlab.ServeConns(ln, func(c net.Conn) {
		c.Write([]byte{1})
		c.Read(make([]byte, 1))
	})
}

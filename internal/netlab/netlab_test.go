package netlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireRoot skips the test unless a lab can be built here.
func requireRoot(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err.Error())
	}
}

// newLab builds a lab closed at the end of the test.
func newLab(t *testing.T, opts Options) *Lab {
	t.Helper()
	requireRoot(t)
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

func namespaces(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	set := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 {
			set[f[0]] = true
		}
	}
	return set
}

func hostPort(a netip.Addr, port uint16) string { return netip.AddrPortFrom(a, port).String() }

// httpGet fetches url with connections dialed from namespace ns.
func httpGet(ctx context.Context, l *Lab, ns, url string) (string, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return l.DialContext(ctx, ns, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// echoOnce sends msg through a ServeEcho server at addr, dialed from ns, and returns the reply
// and the local address used.
func echoOnce(ctx context.Context, l *Lab, ns, addr, msg string) (string, netip.Addr, error) {
	c, err := l.DialContext(ctx, ns, "tcp", addr)
	if err != nil {
		return "", netip.Addr{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", netip.Addr{}, err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(), err
}

func TestLab(t *testing.T) {
	t.Parallel()
	l := newLab(t, Options{Prefix: "nltest-", ExtraClients: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("layout", func(t *testing.T) {
		want := []string{"198.18.1.1", "198.18.1.3"}
		if len(l.Clients) != 2 || l.Clients[0] != l.Client || len(l.ClientIPs) != 2 {
			t.Fatalf("Clients %v ClientIPs %v", l.Clients, l.ClientIPs)
		}
		for i, ip := range l.ClientIPs {
			if ip.String() != want[i] {
				t.Errorf("ClientIPs[%d] = %v, want %s", i, ip, want[i])
			}
		}
		if l.MgrIP.String() != "198.18.1.2" || l.MgrPodIP.String() != "198.18.2.1" ||
			l.PodIP.String() != "198.18.2.2" || l.PodNet.String() != "198.18.2.0/24" {
			t.Errorf("addresses %v %v %v %v", l.MgrIP, l.MgrPodIP, l.PodIP, l.PodNet)
		}
		ns := namespaces(t)
		for _, n := range append(append([]string{}, l.Clients...), l.Mgr, l.Pod) {
			if !strings.HasPrefix(n, "nltest-") || !ns[n] {
				t.Errorf("namespace %q missing from ip netns list", n)
			}
		}
	})

	t.Run("client routes", func(t *testing.T) {
		for i, ns := range l.Clients {
			out, err := l.Run(ctx, ns, "ip", "-4", "route", "show", "table", "all", "type", "unicast")
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("198.18.1.0/24 dev cl0 proto kernel scope link src %s", l.ClientIPs[i])
			if strings.TrimSpace(out) != want {
				t.Errorf("%s routes:\n%s\nwant only %q", ns, out, want)
			}
		}
	})

	t.Run("sysctls", func(t *testing.T) {
		for _, tc := range []struct {
			ns, key, want string
		}{
			{l.Mgr, "net/ipv4/ip_forward", "0"},
			{l.Client, "net/ipv4/tcp_tw_reuse", "1"},
			{l.Clients[1], "net/ipv4/tcp_tw_reuse", "1"},
			{l.Mgr, "net/ipv4/tcp_tw_reuse", "1"},
		} {
			var got []byte
			if err := l.Do(tc.ns, func() (err error) {
				got, err = os.ReadFile("/proc/sys/" + tc.key)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(string(got)) != tc.want {
				t.Errorf("%s %s = %q, want %s", tc.ns, tc.key, got, tc.want)
			}
		}
	})

	// An HTTP server in the pod, reached from Mgr; never from a client.
	podLn, err := l.Listen(l.Pod, "tcp", hostPort(l.PodIP, 8080))
	if err != nil {
		t.Fatal(err)
	}
	stopHTTP := ServeHTTP(podLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "pod says hi to "+r.RemoteAddr)
	}))
	defer stopHTTP()
	podURL := "http://" + hostPort(l.PodIP, 8080) + "/"

	t.Run("client cannot reach pod", func(t *testing.T) {
		for _, ns := range l.Clients {
			if out, err := l.Run(ctx, ns, "ip", "route", "get", l.PodIP.String()); err == nil {
				t.Errorf("%s has a route to the pod: %s", ns, out)
			}
			dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
			start := time.Now()
			c, err := l.DialContext(dctx, ns, "tcp", hostPort(l.PodIP, 8080))
			dcancel()
			if err == nil {
				c.Close()
				t.Fatalf("%s dialed the pod", ns)
			}
			if !errors.Is(err, syscall.ENETUNREACH) || time.Since(start) > time.Second {
				t.Errorf("%s: dial error %v after %v, want a fast ENETUNREACH", ns, err, time.Since(start))
			}
		}
	})

	t.Run("mgr reaches pod", func(t *testing.T) {
		body, err := httpGet(ctx, l, l.Mgr, podURL)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(body, "pod says hi to 198.18.2.1:") {
			t.Fatalf("body %q", body)
		}
	})

	t.Run("clients reach mgr", func(t *testing.T) {
		ln, err := l.Listen(l.Mgr, "tcp", hostPort(l.MgrIP, 7000))
		if err != nil {
			t.Fatal(err)
		}
		stop := ServeEcho(ln)
		defer stop()
		for i, ns := range l.Clients {
			got, local, err := echoOnce(ctx, l, ns, hostPort(l.MgrIP, 7000), "ping from "+ns)
			if err != nil {
				t.Fatalf("%s: %v", ns, err)
			}
			if got != "ping from "+ns || local != l.ClientIPs[i] {
				t.Errorf("%s: echo %q from %v, want from %v", ns, got, local, l.ClientIPs[i])
			}
		}
	})

	t.Run("udp echo", func(t *testing.T) {
		pc, err := l.ListenPacket(l.Pod, "udp", hostPort(l.PodIP, 7001))
		if err != nil {
			t.Fatal(err)
		}
		stop := ServeUDPEcho(pc)
		defer stop()
		c, err := l.DialContext(ctx, l.Mgr, "udp", hostPort(l.PodIP, 7001))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "datagram")
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "datagram" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
	})

	t.Run("dig", func(t *testing.T) {
		const dig = "/usr/bin/dig"
		if _, err := os.Stat(dig); err != nil {
			t.Skip("no " + dig)
		}
		pc, err := l.ListenPacket(l.Pod, "udp", hostPort(l.PodIP, 53))
		if err != nil {
			t.Fatal(err)
		}
		stop := ServeDNS(pc, map[string]netip.Addr{"svc.test.": netip.MustParseAddr("198.18.2.42")})
		defer stop()
		at := "@" + l.PodIP.String()
		out, err := l.Run(ctx, l.Mgr, dig, at, "+short", "+time=2", "+tries=1", "svc.test.")
		if err != nil {
			t.Fatal(err)
		}
		if out != "198.18.2.42\n" {
			t.Errorf("dig +short svc.test. = %q", out)
		}
		out, err = l.Run(ctx, l.Mgr, dig, at, "+time=2", "+tries=1", "SVC.Test.")
		if err != nil || !strings.Contains(out, "198.18.2.42") {
			t.Errorf("dig SVC.Test.: %v\n%s", err, out)
		}
		out, err = l.Run(ctx, l.Mgr, dig, at, "+time=2", "+tries=1", "missing.test.")
		if err != nil || !strings.Contains(out, "status: NXDOMAIN") {
			t.Errorf("dig missing.test.: %v\n%s", err, out)
		}
	})

	t.Run("sink checksum", func(t *testing.T) {
		ln, err := l.Listen(l.Pod, "tcp", hostPort(l.PodIP, 7002))
		if err != nil {
			t.Fatal(err)
		}
		stop := ServeSink(ln)
		defer stop()
		sctx, scancel := context.WithTimeout(ctx, time.Minute)
		defer scancel()
		ok, err := sendToSink(sctx, func(ctx context.Context) (net.Conn, error) {
			return l.DialContext(ctx, l.Mgr, "tcp", hostPort(l.PodIP, 7002))
		}, 100<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Fatal("checksum mismatch")
		}
	})

	t.Run("kernel route", func(t *testing.T) {
		if err := l.KernelRoute(true); err != nil {
			t.Fatal(err)
		}
		if err := l.KernelRoute(true); err != nil { // idempotent
			t.Fatal(err)
		}
		body, err := httpGet(ctx, l, l.Client, podURL)
		if err != nil {
			t.Fatal(err)
		}
		if want := "pod says hi to " + l.ClientIP.String() + ":"; !strings.HasPrefix(body, want) {
			t.Errorf("body %q, want prefix %q", body, want)
		}
		for range 2 { // idempotent
			if err := l.KernelRoute(false); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := l.Run(ctx, l.Client, "ip", "route", "get", l.PodIP.String()); err == nil {
			t.Errorf("route left after KernelRoute(false): %s", out)
		}
		var fwd []byte
		l.Do(l.Mgr, func() (err error) { fwd, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward"); return err })
		if strings.TrimSpace(string(fwd)) != "0" {
			t.Errorf("ip_forward %q after KernelRoute(false)", fwd)
		}
	})

	t.Run("processes", func(t *testing.T) {
		dir := t.TempDir()
		log := filepath.Join(dir, "sub", "p.log")
		p, err := l.Start(l.Client, log, "sh", "-c", "ip -br addr show cl0; echo to-stderr >&2; exec sleep 60")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(100 * time.Millisecond); err == nil {
			t.Fatal("Wait returned nil for a running process")
		}
		// Wait for the output, then stop.
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(log)
			if strings.Contains(string(b), "to-stderr") {
				if !strings.Contains(string(b), l.ClientIP.String()) {
					t.Errorf("log %q: not run in %s", b, l.Client)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("log %q", b)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := p.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}

		// A process that exits by itself reports its status.
		p, err = l.Start(l.Mgr, log, "sh", "-c", "exit 3")
		if err != nil {
			t.Fatal(err)
		}
		var ee *exec.ExitError
		if err := p.Wait(10 * time.Second); !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("Wait = %v, want exit status 3", err)
		}

		// Signal reaches the process.
		p, err = l.Start(l.Mgr, log, "sleep", "60")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(5 * time.Second); !exitedBy(err, syscall.SIGINT) {
			t.Errorf("Wait after SIGINT = %v", err)
		}
	})

	t.Run("command context kills group", func(t *testing.T) {
		cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer ccancel()
		start := time.Now()
		// The background sleep keeps the output pipe open: only a group kill ends it quickly.
		_, err := l.Run(cctx, l.Client, "sh", "-c", "sleep 30 & sleep 30")
		if err == nil || time.Since(start) > 2*time.Second {
			t.Errorf("Run returned %v after %v", err, time.Since(start))
		}
	})

	// Left running for Close: one that ignores SIGTERM, with a child in its group.
	stubborn, err := l.Start(l.Pod, filepath.Join(t.TempDir(), "stubborn.log"),
		"sh", "-c", "trap '' TERM; sleep 60 & echo $! ; wait")
	if err != nil {
		t.Fatal(err)
	}
	polite, err := l.Start(l.Mgr, filepath.Join(t.TempDir(), "polite.log"), "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the trap be set

	stopHTTP()
	names := append(append([]string{}, l.Clients...), l.Mgr, l.Pod)
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < closeGrace || d > closeGrace+5*time.Second {
		t.Errorf("Close took %v, want about %v (SIGTERM ignored, then SIGKILL)", d, closeGrace)
	}
	for _, p := range []*Proc{stubborn, polite} {
		select {
		case <-p.Done():
		default:
			t.Errorf("%v still running after Close", p.Cmd.Args)
		}
	}
	// SIGKILL is delivered asynchronously: give the group's last member a moment to go.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, err := exec.Command("pgrep", "-g", fmt.Sprint(stubborn.Cmd.Process.Pid)).Output()
		if err != nil {
			break // none left (or no pgrep)
		}
		if time.Now().After(deadline) {
			t.Errorf("processes left in the group of a stopped process: %s", out)
			break
		}
	}
	ns := namespaces(t)
	for _, n := range names {
		if ns[n] {
			t.Errorf("namespace %s still exists after Close", n)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.Start(l.Mgr, filepath.Join(t.TempDir(), "late.log"), "true"); err == nil {
		t.Error("Start after Close succeeded")
	}
}

// TestLabSingleClient covers the plain veth link used without extra clients.
func TestLabSingleClient(t *testing.T) {
	t.Parallel()
	l := newLab(t, Options{Prefix: "nltest-"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if len(l.Clients) != 1 || l.Clients[0] != l.Client || l.ClientIPs[0] != l.ClientIP {
		t.Fatalf("Clients %v ClientIPs %v", l.Clients, l.ClientIPs)
	}
	out, err := l.Run(ctx, l.Mgr, "ip", "-br", "addr", "show", "mg0")
	if err != nil || !strings.Contains(out, "198.18.1.2/24") {
		t.Fatalf("mg0: %v %s", err, out)
	}
	ln, err := l.Listen(l.Mgr, "tcp", hostPort(l.MgrIP, 7000))
	if err != nil {
		t.Fatal(err)
	}
	stop := ServeEcho(ln)
	defer stop()
	got, local, err := echoOnce(ctx, l, l.Client, hostPort(l.MgrIP, 7000), "hi")
	if err != nil || got != "hi" || local != l.ClientIP {
		t.Fatalf("echo %q from %v: %v", got, local, err)
	}
}

// TestDo checks errors, panics and Goexit in fn, and that no thread is left in a lab
// namespace.
func TestDo(t *testing.T) {
	t.Parallel()
	l := newLab(t, Options{Prefix: "nltest-"})
	self, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	if err := l.Do(l.Pod, func() (err error) {
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == self {
		t.Fatalf("Do did not switch namespace (%s)", inside)
	}

	errBoom := errors.New("boom")
	if err := l.Do(l.Pod, func() error { return errBoom }); !errors.Is(err, errBoom) {
		t.Errorf("Do = %v, want %v", err, errBoom)
	}
	if err := l.Do("nltest-no-such-namespace", func() error { return nil }); err == nil {
		t.Error("Do in a missing namespace succeeded")
	}
	if err := l.Do(l.Pod, func() error { runtime.Goexit(); return nil }); err == nil {
		t.Error("Do with Goexit returned nil")
	}
	func() {
		defer func() {
			if v := recover(); v != "panic in fn" {
				t.Errorf("recovered %v", v)
			}
		}()
		l.Do(l.Pod, func() error { panic("panic in fn") })
	}()

	// Many Do calls, then every thread the runtime hands out must be in our namespace.
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() { l.Do(l.Mgr, func() error { time.Sleep(time.Millisecond); return nil }) })
	}
	wg.Wait()
	bad := make(chan string, 1000)
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if ns, _ := os.Readlink("/proc/thread-self/ns/net"); ns != self {
				bad <- ns
			}
			time.Sleep(5 * time.Millisecond) // occupy the thread so others get other threads
		})
	}
	wg.Wait()
	close(bad)
	for ns := range bad {
		t.Errorf("a thread is in %s after Do, want %s", ns, self)
	}
}

func TestNewInvalidPrefix(t *testing.T) {
	requireRoot(t)
	for _, p := range []string{"a/b", "has space", ".hidden"} {
		if l, err := New(Options{Prefix: p}); err == nil {
			l.Close()
			t.Errorf("New(Prefix %q) succeeded", p)
		}
	}
}

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDataPath exercises one connected daemon with real programs.
func TestDataPath(t *testing.T) {
	e := newEnv(t, envOptions{})

	t.Run("curl", func(t *testing.T) {
		out, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "10", "http://"+e.podAddr(portHTTP)+"/")
		if err != nil || !strings.Contains(out, "hello from the pod") {
			t.Fatalf("curl: %v\n%s", err, out)
		}
	})

	t.Run("100MB with checksum", func(t *testing.T) {
		const size = 100 << 20
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c, err := e.lab.DialContext(ctx, e.lab.Client, "tcp", e.podAddr(portSink))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		h := sha256.New()
		src := rand.NewChaCha8([32]byte{1, 2, 3})
		w := io.MultiWriter(c, h)
		if _, err := io.CopyN(w, src, size); err != nil {
			t.Fatal(err)
		}
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("reading the pod's checksum: %v", err)
		}
		if want := hex.EncodeToString(h.Sum(nil)); strings.TrimSpace(got) != want {
			t.Fatalf("pod received sha256 %s, sent %s", strings.TrimSpace(got), want)
		}
	})

	t.Run("half-close with nc", func(t *testing.T) {
		if _, err := exec.LookPath("nc"); err != nil {
			t.Skip("nc not installed")
		}
		cmd := e.lab.Command(context.Background(), e.lab.Client, "nc", "-N", "-w", "10", e.lab.PodIP.String(), fmt.Sprint(portEcho))
		cmd.Stdin = strings.NewReader("ping through the half-closed tunnel\n")
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "ping through the half-closed tunnel\n" {
			t.Fatalf("nc -N: %v, got %q", err, out)
		}
	})

	t.Run("refused port resets promptly", func(t *testing.T) {
		start := time.Now()
		cmd := e.lab.Command(context.Background(), e.lab.Client, "curl", "-sS", "--max-time", "10", "http://"+e.podAddr(portRefused)+"/")
		out, err := cmd.CombinedOutput()
		// curl's exit code 7 is "failed to connect": the RST came back.
		if cmd.ProcessState.ExitCode() != 7 {
			t.Fatalf("curl to a closed port: %v, want exit code 7\n%s", err, out)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("refusal took %v", d)
		}
	})

	// dialUDPEcho connects to the pod's UDP echo server from the client.
	dialUDPEcho := func(t *testing.T) *net.UDPConn {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := e.lab.DialContext(ctx, e.lab.Client, "udp", e.podAddr(portUDPEcho))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UDPConn)
	}

	t.Run("UDP echo", func(t *testing.T) {
		c := dialUDPEcho(t)
		buf := make([]byte, 2048)
		for i := range 20 {
			msg := fmt.Sprintf("datagram %d", i)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != msg {
				t.Fatalf("echo %d: %q, %v", i, buf[:n], err)
			}
		}
	})

	// A UDP send with segmentation offload (UDP_SEGMENT) leaves the
	// kernel as one superpacket where the device accepts them; the VIF's
	// device does not, so each segment arrives as its own datagram.
	t.Run("UDP segmentation offload", func(t *testing.T) {
		c := dialUDPEcho(t)
		const seg, n = 100, 3
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, seg) }); err != nil || serr != nil {
			t.Skipf("UDP_SEGMENT: %v %v", err, serr)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(bytes.Repeat([]byte("u"), seg*n)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		for i := range n {
			m, err := c.Read(buf)
			if err != nil || m != seg {
				t.Fatalf("echo of segment %d: %d bytes, %v", i, m, err)
			}
		}
	})

	t.Run("dig", func(t *testing.T) {
		if _, err := exec.LookPath("dig"); err != nil {
			t.Skip("dig not installed")
		}
		out, err := e.run(e.lab.Client, "dig", "+short", "+time=3", "+tries=2", "@"+e.lab.PodIP.String(), "svc.test.")
		if err != nil || strings.TrimSpace(out) != "198.18.2.77" {
			t.Fatalf("dig: %v\n%s", err, out)
		}
	})

	t.Run("200 concurrent connections", func(t *testing.T) {
		const n = 200
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- echoOnce(e, fmt.Sprintf("connection %d says hello\n", i))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("status --json", func(t *testing.T) {
		st := e.status()
		if st["connected"] != true || st["manager"] != e.mgrAddr() || st["device"] != e.tun {
			t.Fatalf("status: %v", st)
		}
		subnets, _ := st["subnets"].([]any)
		if len(subnets) != 1 || subnets[0] != e.lab.PodNet.String() {
			t.Fatalf("subnets: %v", st["subnets"])
		}
		counters, _ := st["counters"].(map[string]any)
		if n, _ := counters["tcp_tunnels"].(float64); n < 200 {
			t.Fatalf("tcp_tunnels = %v after 200+ connections", counters["tcp_tunnels"])
		}
	})

	t.Run("quit removes routes and device", func(t *testing.T) {
		if out, err := e.tether("quit"); err != nil {
			t.Fatalf("quit: %v\n%s", err, out)
		}
		routes, _ := e.run(e.lab.Client, "ip", "route")
		if strings.Contains(routes, e.lab.PodNet.String()) {
			t.Fatalf("route left after quit:\n%s", routes)
		}
		if out, err := e.run(e.lab.Client, "ip", "link", "show", e.tun); err == nil {
			t.Fatalf("device left after quit:\n%s", out)
		}
		if st := e.status(); st["connected"] != false {
			t.Fatalf("status after quit: %v", st)
		}
	})
}

// echoOnce sends msg to the pod's echo server, half-closes, and checks the
// reply.
func echoOnce(e *env, msg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := e.lab.DialContext(ctx, e.lab.Client, "tcp", e.podAddr(portEcho))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}

// TestManagerRestart: live flows are reset, and new ones work again without
// a new connect.
func TestManagerRestart(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	live, err := e.lab.DialContext(ctx, e.lab.Client, "tcp", e.podAddr(portHold))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()

	if err := e.mgr.Stop(); err != nil {
		t.Fatal(err)
	}
	live.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := live.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) && err != io.EOF {
		t.Fatalf("live connection after manager stop: %v, want reset", err)
	}
	e.startManager()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "3", "http://"+e.podAddr(portHTTP)+"/")
		if err == nil && strings.Contains(out, "hello from the pod") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new flow within 20s of the manager's restart: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := e.status(); st["connected"] != true || st["link"] != "ready" {
		t.Fatalf("status after restart: %v", st)
	}
}

// TestDaemonKilled: a daemon killed with SIGKILL leaves nothing that gets
// in the way, and the next one resumes the same session by itself.
func TestDaemonKilled(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := e.status()["session_id"]
	if err := e.daemon.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.daemon.Wait(10 * time.Second)
	if out, err := e.run(e.lab.Client, "ip", "link", "show", e.tun); err == nil {
		t.Fatalf("device left after SIGKILL:\n%s", out)
	}
	e.startDaemon()
	e.waitResumed()
	if after := e.status()["session_id"]; after != before {
		t.Fatalf("session %v after restart, want the same %v", after, before)
	}
	if out, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "10", "http://"+e.podAddr(portHTTP)+"/"); err != nil {
		t.Fatalf("curl after restart: %v\n%s", err, out)
	}
}

// TestDaemonSIGTERM: the daemon removes routes and device on SIGTERM.
func TestDaemonSIGTERM(t *testing.T) {
	e := newEnv(t, envOptions{})
	if err := e.daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	if routes, _ := e.run(e.lab.Client, "ip", "route"); strings.Contains(routes, e.lab.PodNet.String()) {
		t.Fatalf("route left after SIGTERM:\n%s", routes)
	}
	if out, err := e.run(e.lab.Client, "ip", "link", "show", e.tun); err == nil {
		t.Fatalf("device left after SIGTERM:\n%s", out)
	}
}

// TestConnectFailures: clear errors, non-zero exit codes.
func TestConnectFailures(t *testing.T) {
	e := newEnv(t, envOptions{})
	if _, err := e.tether("quit"); err != nil {
		t.Fatal(err)
	}
	t.Run("manager unreachable", func(t *testing.T) {
		addr := fmt.Sprintf("%s:%d", e.lab.MgrIP, 8999)
		out, err := e.tether("connect", "--manager", addr)
		if err == nil {
			t.Fatalf("connect to a closed port succeeded:\n%s", out)
		}
		if !strings.Contains(out, addr) || !strings.Contains(out, "refused") {
			t.Fatalf("error does not name the address and cause:\n%s", out)
		}
		if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
			t.Fatalf("error is not one line:\n%s", out)
		}
	})
	t.Run("conflicting subnet", func(t *testing.T) {
		// A second manager offering the client's own link network.
		p, err := e.lab.Start(e.lab.Mgr, e.dir+"/manager2.log", tetherBin, "manager",
			"--listen", fmt.Sprintf("%s:%d", e.lab.MgrIP, 8082), "--subnet", "198.18.1.128/25", "--insecure-listen-any")
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		addr := fmt.Sprintf("%s:%d", e.lab.MgrIP, 8082)
		e.waitTCP(e.lab.Client, addr)
		out, err := e.tether("connect", "--manager", addr)
		if err == nil || !strings.Contains(out, "198.18.1.128/25") || !strings.Contains(out, "--allow-conflicting-subnets") {
			t.Fatalf("overlapping subnet not refused clearly: %v\n%s", err, out)
		}
	})
	t.Run("no daemon", func(t *testing.T) {
		out, err := e.run(e.lab.Client, tetherBin, "--socket", e.dir+"/nobody.sock", "status")
		if err == nil || !strings.Contains(out, "tether daemon") {
			t.Fatalf("status without a daemon: %v\n%s", err, out)
		}
	})
}

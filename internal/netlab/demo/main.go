// Command demo shows Tether end to end in a lab of network namespaces: a
// "pod" HTTP server, a traffic manager and the root daemon, then curl from
// the "laptop" namespace through the VIF. It removes everything it built.
// Run it with `make demo` (root).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/netlab"
)

func main() {
	bin := flag.String("tether", "bin/tether", "the tether binary to run")
	flag.Parse()
	if err := run(*bin); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(bin string) error {
	if err := netlab.Available(); err != nil {
		return fmt.Errorf("the lab needs root, iproute2 and /dev/net/tun: %w", err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		return fmt.Errorf("curl is not installed (apt-get install -y curl)")
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	lab, err := netlab.New(netlab.Options{Prefix: "demo-"})
	if err != nil {
		return err
	}
	defer lab.Close()
	dir, err := os.MkdirTemp("", "tether-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, "daemon.sock")
	mgrAddr := net.JoinHostPort(lab.MgrIP.String(), "8081")
	podURL := fmt.Sprintf("http://%s/", net.JoinHostPort(lab.PodIP.String(), "8080"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	step := func(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }
	show := func(ns string, name string, args ...string) error {
		fmt.Printf("$ %s\n", strings.Join(append([]string{filepath.Base(name)}, args...), " "))
		out, err := lab.Run(ctx, ns, name, args...)
		fmt.Print(indent(out))
		return err
	}

	step("pod %s serves HTTP in namespace %s", lab.PodIP, lab.Pod)
	ln, err := lab.Listen(lab.Pod, "tcp", ":8080")
	if err != nil {
		return err
	}
	defer netlab.ServeHTTP(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hello from the pod %s; you came from %s\n", lab.PodIP, r.RemoteAddr)
	}))()

	step("the laptop (%s) cannot reach the pod network yet", lab.Client)
	if err := show(lab.Client, "curl", "-sS", "--max-time", "2", podURL); err == nil {
		return fmt.Errorf("the laptop reached the pod without Tether")
	}

	step("traffic manager in namespace %s, daemon in namespace %s (logs in %s)", lab.Mgr, lab.Client, dir)
	if _, err := lab.Start(lab.Mgr, filepath.Join(dir, "manager.log"), bin, "manager", "--listen", mgrAddr, "--subnet", lab.PodNet.String(), "--insecure-listen-any"); err != nil {
		return err
	}
	daemon, err := lab.Start(lab.Client, filepath.Join(dir, "daemon.log"), bin, "--socket", socket, "daemon", "--tun-name", "tether-demo")
	if err != nil {
		return err
	}
	tether := func(args ...string) error {
		return show(lab.Client, bin, append([]string{"--socket", socket}, args...)...)
	}
	if err := retry(ctx, func() error {
		_, err := lab.Run(ctx, lab.Client, bin, "--socket", socket, "--no-activity", "status")
		return err
	}); err != nil {
		return fmt.Errorf("daemon did not start: %w", err)
	}
	if err := retry(ctx, func() error { return tether("connect", "--manager", mgrAddr) }); err != nil {
		return err
	}
	step("now curl reaches the pod through the VIF")
	if err := show(lab.Client, "curl", "-sS", "--max-time", "10", podURL); err != nil {
		return err
	}
	if err := tether("status"); err != nil {
		return err
	}
	step("quit removes the routes and the TUN")
	if err := tether("quit"); err != nil {
		return err
	}
	if err := show(lab.Client, "ip", "route"); err != nil {
		return err
	}
	if err := daemon.Stop(); err != nil {
		return err
	}
	step("demo done; removing the lab")
	return nil
}

// retry runs fn until it succeeds, for at most 10 seconds.
func retry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

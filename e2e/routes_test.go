package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clientRoutes is every IPv4 and IPv6 route of the client namespace, in
// all tables.
func (e *env) clientRoutes() string {
	e.t.Helper()
	v4, err := e.run(e.lab.Client, "ip", "-4", "route", "show", "table", "all")
	if err != nil {
		e.t.Fatal(err)
	}
	v6, err := e.run(e.lab.Client, "ip", "-6", "route", "show", "table", "all")
	if err != nil {
		e.t.Fatal(err)
	}
	return v4 + v6
}

// TestRogueRoutes: a manager, or a member of the socket group who points
// the daemon at one, cannot turn the daemon into a redirect of the host's
// traffic: connect refuses with one line naming the route, and the client
// namespace's routes stay as they were.
func TestRogueRoutes(t *testing.T) {
	e := newEnv(t, envOptions{})
	if _, err := e.tether("quit"); err != nil {
		t.Fatal(err)
	}
	eighths := make([]string, 256)
	for i := range eighths {
		eighths[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(i)}), 8).String()
	}
	for i, tc := range []struct {
		name    string
		subnets []string
		want    string
	}{
		{"half the internet", []string{"0.0.0.0/1"}, "0.0.0.0/1, wider than /8 (routes.minPrefixLength)"},
		{"the default route in halves", []string{"0.0.0.0/1", "128.0.0.0/1"}, "wider than /8 (routes.minPrefixLength)"},
		{"the default route in 256 /8s", eighths, "cover every IPv4 address"},
		{"the IPv6 default route in halves", []string{"198.18.2.0/24", "::/1", "8000::/1"}, "wider than /32 (routes.minPrefixLengthIPv6)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fmt.Sprintf("%s:%d", e.lab.MgrIP, 8090+i)
			p, err := e.lab.Start(e.lab.Mgr, filepath.Join(e.dir, fmt.Sprintf("rogue%d.log", i)), tetherBin, "manager",
				"--listen", addr, "--subnet", strings.Join(tc.subnets, ","), "--insecure-listen-any")
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			e.waitTCP(e.lab.Client, addr)
			before := e.clientRoutes()
			out, err := e.tether("connect", "--manager", addr)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("connect to a rogue manager: %v\n%s\nwant a refusal saying %q", err, out, tc.want)
			}
			if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
				t.Fatalf("the refusal is not one line:\n%s", out)
			}
			if after := e.clientRoutes(); after != before {
				t.Fatalf("routes changed by a refused connect:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if out, err := e.run(e.lab.Client, "ip", "link", "show", e.tun); err == nil {
				t.Fatalf("device left by a refused connect:\n%s", out)
			}
		})
	}

	// A route another interface has (another VPN's) is never replaced.
	t.Run("a route on another device", func(t *testing.T) {
		for _, args := range [][]string{
			{"tuntap", "add", "dev", "othervpn0", "mode", "tun"},
			{"link", "set", "othervpn0", "up"},
			{"route", "add", e.lab.PodNet.String(), "dev", "othervpn0"},
		} {
			if out, err := e.run(e.lab.Client, "ip", args...); err != nil {
				t.Fatalf("ip %v: %v\n%s", args, err, out)
			}
		}
		before := e.clientRoutes()
		out, err := e.tether("connect", "--manager", e.mgrAddr())
		want := fmt.Sprintf("route %s dev othervpn0 already exists", e.lab.PodNet)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("connect over another device's route: %v\n%s\nwant %q", err, out, want)
		}
		if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
			t.Fatalf("the refusal is not one line:\n%s", out)
		}
		if after := e.clientRoutes(); after != before {
			t.Fatalf("routes changed by a refused connect:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if out, err := e.run(e.lab.Client, "ip", "link", "del", "othervpn0"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		e.connect()
	})

	// After a reconnect, the same checks: a manager that comes back rogue
	// changes no route, and status says why.
	t.Run("a manager that comes back rogue", func(t *testing.T) {
		if st := e.status(); st["connected"] != true {
			t.Fatalf("not connected: %v", st)
		}
		before := e.clientRoutes()
		if err := e.mgr.Stop(); err != nil {
			t.Fatal(err)
		}
		e.startManager("--subnet", "0.0.0.0/1,128.0.0.0/1")
		deadline := time.Now().Add(20 * time.Second)
		for {
			st := e.status()
			if fmt.Sprint(st["notices"]) != "[]" {
				if n := fmt.Sprint(st["notices"]); !strings.Contains(n, "routes unchanged") || !strings.Contains(n, "0.0.0.0/1") {
					t.Fatalf("notices %s, want the refusal", n)
				}
				if st["connected"] != true || fmt.Sprint(st["subnets"]) != "["+e.lab.PodNet.String()+"]" {
					t.Fatalf("status after the refusal: %v", st)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no refusal within 20s of the manager's return: %v", st)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if after := e.clientRoutes(); after != before {
			t.Fatalf("routes changed after a rogue reconnect:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tether-dev/tether/internal/apitest"
	"github.com/tether-dev/tether/internal/netlab"
)

// TestLiveSubnets: the manager discovers subnets from a real API server
// (Node spec.podCIDRs, ServiceCIDRs) while a daemon is connected; a new
// one is routed into the laptop's VIF and carries traffic, a removed one's
// route goes, one the daemon must refuse is shown in status and changes
// nothing else, and the session is the same throughout (no reconnect).
func TestLiveSubnets(t *testing.T) {
	requireLab(t)
	admin := apitest.Start(t)
	cs := kubernetes.NewForConfigOrDie(admin)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := newEnv(t, envOptions{mgrArgsFunc: func(e *env) []string {
		return []string{"--kubeconfig", e.apiServerInMgr(admin)}
	}})
	st := e.status()
	session := st["session_id"]
	// The API server's own ServiceCIDR (apitest's service range) joins the
	// configured pod network.
	e.waitSubnets([]string{e.lab.PodNet.String(), "198.19.0.0/24"}, nil)

	// A node with a pod range the pod namespace answers on.
	for _, args := range [][]string{{"-n", e.lab.Mgr, "addr", "add", "198.18.3.1/24", "dev", "mg1"}, {"-n", e.lab.Pod, "addr", "add", "198.18.3.2/24", "dev", "pd0"}} {
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{PodCIDR: "198.18.3.0/24", PodCIDRs: []string{"198.18.3.0/24"}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitSubnets([]string{e.lab.PodNet.String(), "198.18.3.0/24", "198.19.0.0/24"}, nil)
	e.waitRoute("198.18.3.0/24", true)
	if out, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "10", "http://198.18.3.2:8080/"); err != nil || !strings.Contains(out, "hello from the pod") {
		t.Fatalf("curl into the new subnet: %v\n%s", err, out)
	}

	// A ServiceCIDR comes and goes (without a controller manager its
	// finalizer keeps it; being deleted is gone for discovery).
	extra := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "extra"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"198.18.4.0/24"}}}
	if _, err := cs.NetworkingV1().ServiceCIDRs().Create(ctx, extra, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitRoute("198.18.4.0/24", true)
	if err := cs.NetworkingV1().ServiceCIDRs().Delete(ctx, "extra", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitRoute("198.18.4.0/24", false)

	// A pod range on the laptop's own link contains the manager: refused,
	// named in status, the rest routed as before.
	bad := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}, Spec: corev1.NodeSpec{PodCIDR: "198.18.1.0/24", PodCIDRs: []string{"198.18.1.0/24"}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitSubnets([]string{e.lab.PodNet.String(), "198.18.3.0/24", "198.19.0.0/24"}, []string{"198.18.1.0/24"})
	if err := cs.CoreV1().Nodes().Delete(ctx, "n2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// The node goes: so does its route.
	if err := cs.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitSubnets([]string{e.lab.PodNet.String(), "198.19.0.0/24"}, nil)
	e.waitRoute("198.18.3.0/24", false)
	if out, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "10", e.podAddr(portHTTP)); err != nil || !strings.Contains(out, "hello from the pod") {
		t.Fatalf("curl into the configured subnet after the changes: %v\n%s", err, out)
	}
	if st := e.status(); st["session_id"] != session || st["connected"] != true {
		t.Fatalf("the session changed: %v -> %v (connected %v)", session, st["session_id"], st["connected"])
	}
	b, _ := os.ReadFile(filepath.Join(e.dir, "manager.log"))
	if n := strings.Count(string(b), "session opened"); n != 1 || strings.Contains(string(b), "session resumed") {
		t.Fatalf("the daemon reconnected: %d sessions opened, resumed: %v", n, strings.Contains(string(b), "session resumed"))
	}
}

// apiServerInMgr makes the API server on the host's loopback reachable
// from the manager's namespace (a proxy listening there) and returns a
// kubeconfig for it.
func (e *env) apiServerInMgr(admin *rest.Config) string {
	e.t.Helper()
	ln, err := e.lab.Listen(e.lab.Mgr, "tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	upstream := strings.TrimPrefix(admin.Host, "https://")
	e.stops = append(e.stops, netlab.ServeConns(ln, func(c net.Conn) {
		u, err := net.Dial("tcp", upstream)
		if err != nil {
			return
		}
		defer u.Close()
		go func() { io.Copy(u, c); u.Close() }()
		io.Copy(c, u)
	}))
	inMgr := *admin
	inMgr.Host = "https://" + ln.Addr().String()
	return apitest.Kubeconfig(e.t, &inMgr)
}

// waitSubnets waits until status shows exactly subnets routed and a
// refusal naming each of refused.
func (e *env) waitSubnets(subnets, refused []string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := e.status()
		got := fmt.Sprint(st["subnets"])
		why := fmt.Sprint(st["refused_subnets"])
		ok := got == fmt.Sprint(subnets) && !slices.ContainsFunc(refused, func(r string) bool { return !strings.Contains(why, r) })
		if ok && len(refused) == 0 {
			ok = why == "[]"
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("status subnets %s refused %s, want %v refused %v", got, why, subnets, refused)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitRoute waits until the laptop's routing table has (or lacks) a route
// for prefix through the VIF.
func (e *env) waitRoute(prefix string, present bool) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := e.run(e.lab.Client, "ip", "route", "show", prefix)
		if err != nil {
			e.t.Fatal(err)
		}
		if strings.Contains(out, "dev "+e.tun) == present {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("route %s present=%v, want %v:\n%s", prefix, !present, present, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

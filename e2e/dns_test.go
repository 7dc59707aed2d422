package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestClusterDNS: the daemon answers the cluster's domains on the VIF,
// resolving through the manager (whose resolver is the pod's DNS server);
// other names are refused; lookups never make the session active.
func TestClusterDNS(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed")
	}
	// The manager's resolver is the pod's DNS server; its domain is the
	// default, cluster.local.
	e := newEnv(t, envOptions{mgrArgsFunc: func(e *env) []string {
		return []string{"--dns-server", fmt.Sprintf("%s:53", e.lab.PodIP), "--dns-search", "default.svc.cluster.local"}
	}})
	st := e.status()
	dns, _ := st["dns"].(string)
	if dns != "198.18.2.254:53" {
		t.Fatalf("status dns = %q", dns)
	}
	server := "@" + strings.TrimSuffix(dns, ":53")
	before := e.status()["counters"].(map[string]any)["activity_events"]
	for range 5 {
		out, err := e.run(e.lab.Client, "dig", "+short", "+time=3", "+tries=1", server, "web.default.svc.cluster.local")
		if err != nil || strings.TrimSpace(out) != "198.18.2.78" {
			t.Fatalf("dig web.default.svc.cluster.local: %v\n%s", err, out)
		}
	}
	out, _ := e.run(e.lab.Client, "dig", "+time=3", "+tries=1", server, "nope.default.svc.cluster.local.")
	if !strings.Contains(out, "NXDOMAIN") {
		t.Fatalf("a missing cluster name is not NXDOMAIN:\n%s", out)
	}
	out, _ = e.run(e.lab.Client, "dig", "+time=3", "+tries=1", server, "example.com.")
	if !strings.Contains(out, "REFUSED") {
		t.Fatalf("a name outside the cluster domains is not refused:\n%s", out)
	}
	if after := e.status()["counters"].(map[string]any)["activity_events"]; after != before {
		t.Fatalf("lookups counted as activity: %v -> %v", before, after)
	}
}

// TestSearchDomains: `tether connect --namespace shop` gets the search
// domains of a pod in shop, so "web" and "web.shop" resolve through the
// VIF as they would there; dns.search follows them.
func TestSearchDomains(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed")
	}
	e := newEnv(t, envOptions{
		mgrArgsFunc: func(e *env) []string {
			return []string{"--dns-server", fmt.Sprintf("%s:53", e.lab.PodIP), "--dns-search", "corp.example"}
		},
		connectArgsFunc: func(*env) []string { return []string{"--namespace", "shop"} },
	})
	st := e.status()
	search := fmt.Sprint(st["dns_search"])
	if want := "[shop.svc.cluster.local svc.cluster.local cluster.local corp.example]"; search != want || st["namespace"] != "shop" {
		t.Fatalf("status dns_search %s namespace %v, want %s and shop", search, st["namespace"], want)
	}
	server := "@" + strings.TrimSuffix(st["dns"].(string), ":53")
	// dig searches one domain at a time (+domain); the host's resolver
	// walks the list in this order and takes the first answer.
	for _, tc := range []struct{ name, domain string }{
		{"web", "shop.svc.cluster.local"},
		{"web.shop", "svc.cluster.local"},
	} {
		out, err := e.run(e.lab.Client, "dig", "+short", "+time=3", "+tries=1", "+search", "+ndots=5", "+domain="+tc.domain, server, tc.name)
		if err != nil || strings.TrimSpace(out) != "198.18.2.79" {
			t.Fatalf("dig %s with search domain %s: %v\n%s", tc.name, tc.domain, err, out)
		}
	}
}

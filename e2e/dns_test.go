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

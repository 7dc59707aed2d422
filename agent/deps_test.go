package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the agent a forwarder: no TUN, no netstack, no
// daemon, no manager (beyond its API) and no OS configuration.
func TestDependencies(t *testing.T) {
	const mod = "github.com/tether-dev/tether/"
	bad := []string{"gvisor.dev/gvisor", "golang.zx2c4.com/wireguard", mod + "vif", mod + "daemon", mod + "platform", mod + "activity"}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, b := range bad {
			if dep == b || strings.HasPrefix(dep, b+"/") {
				t.Errorf("agent depends on %s", dep)
			}
		}
		if dep == mod+"manager" {
			t.Errorf("agent depends on the manager")
		}
	}
}

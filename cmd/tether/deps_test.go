package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestDependencyDirection keeps the arrows between packages pointing one
// way (STYLE.md, "Layout shows the architecture").
func TestDependencyDirection(t *testing.T) {
	const mod = "github.com/tether-dev/tether/"
	forbidden := map[string][]string{
		"vif":      {"google.golang.org/grpc", mod + "tunnel", mod + "rpc", mod + "daemon", mod + "manager"},
		"tunnel":   {"gvisor.dev/gvisor", "golang.zx2c4.com/wireguard", mod + "vif", mod + "daemon", mod + "platform"},
		"manager":  {"gvisor.dev/gvisor", "golang.zx2c4.com/wireguard", mod + "vif", mod + "platform", mod + "daemon"},
		"platform": {"google.golang.org/grpc", "gvisor.dev/gvisor", mod + "vif", mod + "tunnel", mod + "daemon", mod + "manager"},
		// The agent is a forwarder: no TUN, no netstack, no daemon, no OS
		// configuration; of the manager only its conflict rules.
		"agent": {"gvisor.dev/gvisor", "golang.zx2c4.com/wireguard", mod + "vif", mod + "daemon", mod + "platform", mod + "activity"},
		// The daemon talks to the manager through rpc and wire only.
		"daemon": {mod + "agent"},
		// The forwarder's proxy knows gRPC only; kube/forward adds Kubernetes.
		"internal/grpcproxy": {mod + "kube", "k8s.io/client-go", mod + "daemon", mod + "manager"},
		// The wire contract is imported by every side and imports none.
		"wire": {"google.golang.org/grpc", mod + "rpc", mod + "manager", mod + "daemon", mod + "agent", mod + "tunnel", mod + "internal"},
		// The agent injector is a Kubernetes adapter of the manager's
		// Injector: no Helm SDK, nothing of the laptop's side.
		"kube/inject": {"helm.sh", mod + "daemon", mod + "vif", mod + "platform", mod + "agent"},
	}
	// The rules never see Kubernetes: its adapters (kube/...) implement
	// the rules' interfaces, and the Helm SDK serves only `tether helm`.
	kubernetes := []string{"k8s.io/client-go", "k8s.io/apiserver", "helm.sh", mod + "kube"}
	for _, pkg := range []string{"manager", "manager/conflict", "manager/rbac", "activity", "tunnel", "vif", "daemon", "agent"} {
		forbidden[pkg] = append(forbidden[pkg], kubernetes...)
	}
	// exact names forbidden without their subpackages.
	// The daemon and the agent share the manager's conflict rules, and
	// the wire contract, never the manager itself.
	exact := map[string][]string{"agent": {mod + "manager"}, "daemon": {mod + "manager"}}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "../../"+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				if dep == b || strings.HasPrefix(dep, b+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
			if slices.Contains(exact[pkg], dep) {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}

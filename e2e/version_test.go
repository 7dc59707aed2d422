package e2e

import (
	"encoding/json"
	"testing"
)

// TestVersion: `tether version --json` against a real daemon and manager.
func TestVersion(t *testing.T) {
	e := newEnv(t, envOptions{})
	out, err := e.tether("--no-activity", "version", "--json")
	if err != nil {
		t.Fatalf("version: %v\n%s", err, out)
	}
	type info struct {
		Version  string `json:"version"`
		Go       string `json:"go_version"`
		Protocol uint32 `json:"protocol"`
	}
	var v struct {
		Client         info   `json:"client"`
		Daemon         *info  `json:"daemon"`
		Manager        *info  `json:"manager"`
		ManagerAddress string `json:"manager_address"`
		Notes          []string
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("version --json: %v\n%s", err, out)
	}
	if v.Daemon == nil || v.Manager == nil || v.ManagerAddress != e.mgrAddr() {
		t.Fatalf("daemon or manager missing:\n%s", out)
	}
	// One binary plays all three.
	if *v.Daemon != v.Client || *v.Manager != v.Client || v.Client.Protocol == 0 || v.Client.Go == "" || len(v.Notes) != 0 {
		t.Fatalf("versions differ or are empty:\n%s", out)
	}
}

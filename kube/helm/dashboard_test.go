package helm

import (
	"encoding/json"
	"io/fs"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/tether-dev/tether/charts"
)

// With dashboard.enabled the chart ships the Grafana dashboard as a
// ConfigMap Grafana's sidecar picks up, holding the chart's
// dashboards/tether.json unchanged (the one copy, which the manager's
// TestDashboardMetricsExist checks against the exported metrics). Without
// it there is no such ConfigMap (TestRenderDefaults lists every object).
func TestRenderDashboard(t *testing.T) {
	want, err := fs.ReadFile(charts.Tether, "tether/dashboards/tether.json")
	if err != nil {
		t.Fatalf("the embedded chart lacks the dashboard: %v", err)
	}
	objs, _ := render(t, labSubnets, "dashboard.enabled=true")
	cm := get[*corev1.ConfigMap](t, objs, "ConfigMap tether/tether-dashboard")
	if v := cm.Labels["grafana_dashboard"]; v != "1" {
		t.Errorf("label grafana_dashboard = %q, want \"1\" (what Grafana's sidecar looks for); labels %v", v, cm.Labels)
	}
	if v := cm.Labels["app.kubernetes.io/instance"]; v != "tether" {
		t.Errorf("label app.kubernetes.io/instance = %q, want the release's", v)
	}
	if len(cm.Data) != 1 {
		t.Fatalf("data keys %v, want only tether.json", cm.Data)
	}
	// Helm trims each manifest's end, so the block scalar (|-) drops the
	// file's final newline.
	got := cm.Data["tether.json"]
	if got != strings.TrimSuffix(string(want), "\n") {
		t.Fatalf("tether.json differs from dashboards/tether.json (%d bytes, want %d)", len(got), len(want))
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []any  `json:"panels"`
	}
	if err := json.Unmarshal([]byte(got), &dash); err != nil || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard JSON: uid %q, %d panels, %v", dash.UID, len(dash.Panels), err)
	}
}

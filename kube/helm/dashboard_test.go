package helm

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
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

// The manager serves the dashboard's metrics on metrics.port of its pod,
// annotated for Prometheus's pod discovery; 0 turns them off.
func TestRenderMetrics(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		port int32 // 0: no metrics
	}{
		{"default", nil, 9090},
		{"other port", []string{"metrics.port=9200"}, 9200},
		{"off", []string{"metrics.port=0"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, _ := render(t, append([]string{labSubnets}, tc.set...)...)
			tmpl := get[*appsv1.Deployment](t, objs, "Deployment tether/traffic-manager").Spec.Template
			c := tmpl.Spec.Containers[0]
			// Prometheus's; the TLS names' checksum is TestTLS's.
			prom := maps.Clone(tmpl.Annotations)
			maps.DeleteFunc(prom, func(k, _ string) bool { return !strings.HasPrefix(k, "prometheus.io/") })
			arg := fmt.Sprintf("--metrics-addr=:%d", tc.port)
			i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" })
			if tc.port == 0 {
				if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--metrics-addr") }) || i >= 0 || len(prom) != 0 {
					t.Fatalf("metrics off: args %q, ports %+v, annotations %v", c.Args, c.Ports, prom)
				}
				return
			}
			if !slices.Contains(c.Args, arg) || i < 0 || c.Ports[i].ContainerPort != tc.port {
				t.Fatalf("args %q, ports %+v: want %s and port metrics %d", c.Args, c.Ports, arg, tc.port)
			}
			want := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": fmt.Sprint(tc.port), "prometheus.io/path": "/metrics"}
			if !maps.Equal(prom, want) {
				t.Fatalf("pod annotations %v, want %v", prom, want)
			}
		})
	}
}

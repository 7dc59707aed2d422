package manager

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	pb "github.com/tether-dev/tether/rpc/manager"
)

// TestInterceptMetrics walks the conflict rules and checks each counter
// and gauge the dashboard draws.
func TestInterceptMetrics(t *testing.T) {
	s, clk, u := newInterceptServer(t)
	reg := prometheus.NewPedanticRegistry()
	if err := s.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels ...string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		metric:
			for _, m := range mf.GetMetric() {
				for i := 0; i+1 < len(labels); i += 2 {
					if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[i] && l.GetValue() == labels[i+1] }) {
						continue metric
					}
				}
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no metric %s%v", name, labels)
		return 0
	}
	check := func(step string, want map[string]float64) {
		t.Helper()
		for key, v := range want {
			name, label, _ := strings.Cut(key, " ")
			var labels []string
			if label != "" {
				k, val, _ := strings.Cut(label, "=")
				labels = []string{k, val}
			}
			if got := value(name, labels...); got != v {
				t.Errorf("%s: %s = %v, want %v", step, key, got, v)
			}
		}
	}

	s.CreateIntercept(u["alice"], header("a", "alice", "alice"))
	check("alice intercepts", map[string]float64{
		"tether_manager_intercepts state=ACTIVE": 1, "tether_manager_intercepts state=CONFLICT": 0,
		"tether_manager_sessions": 2, "tether_manager_sessions_by_state state=ACTIVE": 2,
	})
	if _, err := s.CreateIntercept(u["bob"], header("wide", "bob", ".*ice")); err == nil {
		t.Fatal("bob's wide filter was not refused")
	}
	check("bob refused", map[string]float64{"tether_manager_intercept_conflicts_total outcome=refused": 1})

	clk.Add(11 * time.Minute)
	if _, err := s.CreateIntercept(u["bob"], header("wide", "bob", ".*ice")); err != nil {
		t.Fatal(err)
	}
	check("bob supersedes idle alice", map[string]float64{
		"tether_manager_intercept_conflicts_total outcome=superseded": 1,
		"tether_manager_intercepts state=ACTIVE":                      1, "tether_manager_intercepts state=CONFLICT": 1,
		// No reports in this test: both are UNREACHABLE after 11 minutes.
		"tether_manager_sessions_by_state state=UNREACHABLE": 2, "tether_manager_sessions_active": 0,
	})
	s.RemoveIntercept(u["bob"], &pb.RemoveInterceptRequest{Name: "wide"})
	check("bob leaves", map[string]float64{
		"tether_manager_intercept_conflicts_total outcome=restored": 1, "tether_manager_intercepts state=ACTIVE": 1,
	})
	a := states(t, s, u["alice"])["a"]
	s.RevokeIntercept(u["bob"], &pb.RevokeInterceptRequest{Id: a.Id})
	s.RevokeIntercept(u["alice"], &pb.RevokeInterceptRequest{Id: a.Id})
	check("revokes", map[string]float64{
		"tether_manager_intercept_revokes_total result=refused": 1, "tether_manager_intercept_revokes_total result=done": 1,
		"tether_manager_intercepts state=ACTIVE": 0,
	})
	clk.Add(25 * time.Hour)
	s.Expire(clk.Now())
	check("TTL", map[string]float64{"tether_manager_session_expirations_total": 2, "tether_manager_sessions": 0})
}

// TestDashboardMetricsExist: every metric the Grafana dashboard's
// expressions use is exported by a real Server, with the labels the
// expressions group by; and every manager metric has a panel.
func TestDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile("../charts/tether/dashboards/tether.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	s := newTestServer(t)
	reg := prometheus.NewRegistry()
	if err := s.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string][]string{} // name -> label names
	for _, mf := range mfs {
		var labels []string
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		exported[mf.GetName()] = labels
	}
	metricName := regexp.MustCompile(`\btether_[a-z_]+\b`)
	byLabels := regexp.MustCompile(`by \(([a-z_, ]+)\)`)
	used := map[string]bool{}
	if len(dash.Panels) == 0 {
		t.Fatal("the dashboard has no panels")
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no expression", p.Title)
		}
		for _, tg := range p.Targets {
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: %q uses no tether metric", p.Title, tg.Expr)
			}
			for _, name := range names {
				used[name] = true
				labels, ok := exported[name]
				if !ok {
					t.Errorf("panel %q uses %s, which the manager does not export", p.Title, name)
					continue
				}
				for _, m := range byLabels.FindAllStringSubmatch(tg.Expr, -1) {
					for _, l := range strings.Split(m[1], ",") {
						if l = strings.TrimSpace(l); !slices.Contains(labels, l) {
							t.Errorf("panel %q groups %s by %q, a label it does not have (%v)", p.Title, name, l, labels)
						}
					}
				}
			}
		}
	}
	for name := range exported {
		if !used[name] {
			t.Errorf("the manager exports %s but no panel of the dashboard draws it", name)
		}
	}
}

package manager

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tether-dev/tether/activity"
)

// Conflict outcomes, the values of the outcome label of
// tether_manager_intercept_conflicts_total.
const (
	conflictRefused    = "refused"    // a new intercept met an active holder's block right
	conflictSuperseded = "superseded" // an idle holder's intercept was flagged CONFLICT
	conflictRestored   = "restored"   // a flagged intercept became ACTIVE again
)

// metrics are the manager's counters; gauges are computed at scrape time
// from the sessions and intercepts themselves, so they cannot drift.
// charts/tether/dashboards/tether.json (Grafana) draws them; TestDashboardMetricsExist
// keeps the two in step.
type metrics struct {
	expirations prometheus.Counter
	reports     prometheus.Counter
	conflicts   *prometheus.CounterVec // by outcome
	revokes     *prometheus.CounterVec // by result: done, refused
}

func newMetrics() metrics {
	m := metrics{
		expirations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_manager_session_expirations_total",
			Help: "Sessions ended because they were inactive for grpc.connectionTTL.",
		}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_manager_reports_total",
			Help: "Activity and liveness reports received from daemons.",
		}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_manager_intercept_conflicts_total",
			Help: "Intercept conflicts by outcome: refused (the holder was active), superseded (an idle holder's intercept flagged CONFLICT), restored (back to ACTIVE).",
		}, []string{"outcome"}),
		revokes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_manager_intercept_revokes_total",
			Help: "tether revoke calls by result: done, refused (RBAC or no policy).",
		}, []string{"result"}),
	}
	// Every series exists from the start, so rate() sees the first event.
	for _, o := range []string{conflictRefused, conflictSuperseded, conflictRestored} {
		m.conflicts.WithLabelValues(o)
	}
	for _, r := range []string{"done", "refused"} {
		m.revokes.WithLabelValues(r)
	}
	return m
}

var (
	sessionsDesc = prometheus.NewDesc("tether_manager_sessions",
		"Sessions the manager holds.", nil, nil)
	sessionsActiveDesc = prometheus.NewDesc("tether_manager_sessions_active",
		"Sessions with activity within intercept.inactiveBlockTimeout.", nil, nil)
	sessionsByStateDesc = prometheus.NewDesc("tether_manager_sessions_by_state",
		"Sessions by state as tether sessions shows it: ACTIVE, IDLE, UNREACHABLE.", []string{"state"}, nil)
	interceptsDesc = prometheus.NewDesc("tether_manager_intercepts",
		"Intercepts by state: ACTIVE (receives its traffic), CONFLICT (superseded, receives nothing).", []string{"state"}, nil)
)

// gauges is a collector of the gauges, all read under one lock so that
// one scrape is one consistent picture.
type gauges struct{ s *Server }

func (g gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sessionsDesc, sessionsActiveDesc, sessionsByStateDesc, interceptsDesc} {
		ch <- d
	}
}

func (g gauges) Collect(ch chan<- prometheus.Metric) {
	s := g.s
	now := s.now()
	byState := map[string]float64{}
	for _, st := range []activity.State{activity.Active, activity.Idle, activity.Unreachable} {
		byState[st.String()] = 0
	}
	intercepts := map[string]float64{StateActive: 0, StateConflict: 0}
	s.mu.Lock()
	n := len(s.sessions)
	for _, sess := range s.sessions {
		byState[sess.ledger.State(now, s.rules.InactiveBlockTimeout, sess.reportInterval).String()]++
	}
	for _, x := range s.intercepts {
		intercepts[x.state]++
	}
	s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(sessionsActiveDesc, prometheus.GaugeValue, byState[activity.Active.String()])
	for st, v := range byState {
		ch <- prometheus.MustNewConstMetric(sessionsByStateDesc, prometheus.GaugeValue, v, st)
	}
	for st, v := range intercepts {
		ch <- prometheus.MustNewConstMetric(interceptsDesc, prometheus.GaugeValue, v, st)
	}
}

// RegisterMetrics registers the manager's metrics on reg.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.metrics.expirations, s.metrics.reports, s.metrics.conflicts, s.metrics.revokes, gauges{s}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

package manager

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tether-dev/tether/activity"
)

// metrics are the manager's counters; gauges are computed at scrape time
// from the sessions themselves, so they cannot drift.
type metrics struct {
	expirations prometheus.Counter
	reports     prometheus.Counter
}

func newMetrics() metrics {
	return metrics{
		expirations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_manager_session_expirations_total",
			Help: "Sessions ended because they were inactive for grpc.connectionTTL.",
		}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_manager_reports_total",
			Help: "Activity and liveness reports received from daemons.",
		}),
	}
}

// RegisterMetrics registers the manager's metrics on reg.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	count := func(active bool) func() float64 {
		return func() float64 {
			now := s.now()
			s.mu.Lock()
			defer s.mu.Unlock()
			if !active {
				return float64(len(s.sessions))
			}
			n := 0
			for _, sess := range s.sessions {
				if sess.ledger.State(now, s.rules.InactiveBlockTimeout, sess.reportInterval) == activity.Active {
					n++
				}
			}
			return float64(n)
		}
	}
	for _, c := range []prometheus.Collector{
		s.metrics.expirations, s.metrics.reports,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_manager_sessions", Help: "Sessions the manager holds."}, count(false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tether_manager_sessions_active", Help: "Sessions with activity within intercept.inactiveBlockTimeout."}, count(true)),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tether-dev/tether/activity"
)

// metrics are the daemon's counters, for `--metrics-addr`.
type metrics struct {
	flows    *prometheus.CounterVec // by kind: tcp, udp, inbound
	activity *prometheus.CounterVec // by kind: tcp, cli
}

func newMetrics() *metrics {
	return &metrics{
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_daemon_flows_total", Help: "Flows opened, by kind.",
		}, []string{"kind"}),
		activity: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_daemon_activity_events_total", Help: "Events that counted as user activity, by kind.",
		}, []string{"kind"}),
	}
}

// flow counts a flow, and the activity it was.
func (m *metrics) flow(kind activity.Kind, counted bool) {
	m.flows.WithLabelValues(kind.String()).Inc()
	if counted {
		m.activity.WithLabelValues(kind.String()).Inc()
	}
}

// RegisterMetrics registers the daemon's metrics on reg.
func (d *Daemon) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{d.metrics.flows, d.metrics.activity} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

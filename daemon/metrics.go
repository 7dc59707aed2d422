package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tether-dev/tether/activity"
)

// metrics are the daemon's counters, for `--metrics-addr`. The counter of
// each kind is looked up once here, not on every flow.
type metrics struct {
	flowVec, activityVec *prometheus.CounterVec
	flows                map[activity.Kind]prometheus.Counter // tcp, udp, inbound
	activity             map[activity.Kind]prometheus.Counter // tcp, cli
}

func newMetrics() *metrics {
	m := &metrics{
		flowVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_daemon_flows_total", Help: "Flows opened, by kind.",
		}, []string{"kind"}),
		activityVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_daemon_activity_events_total", Help: "Events that counted as user activity, by kind.",
		}, []string{"kind"}),
		flows:    map[activity.Kind]prometheus.Counter{},
		activity: map[activity.Kind]prometheus.Counter{},
	}
	for _, k := range []activity.Kind{activity.TCPTunnel, activity.UDPFlow, activity.InboundFlow} {
		m.flows[k] = m.flowVec.WithLabelValues(k.String())
	}
	for _, k := range []activity.Kind{activity.TCPTunnel, activity.CLI} {
		m.activity[k] = m.activityVec.WithLabelValues(k.String())
	}
	return m
}

// flow counts a flow, and the activity it was.
func (m *metrics) flow(kind activity.Kind, counted bool) {
	m.flows[kind].Inc()
	if counted {
		m.activity[kind].Inc()
	}
}

// RegisterMetrics registers the daemon's metrics on reg.
func (d *Daemon) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{d.metrics.flowVec, d.metrics.activityVec} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

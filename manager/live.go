package manager

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The live keys are the values an adapter may change while the manager
// runs (the traffic-manager configmap of the Helm chart): the activity
// rules and the limits, under the names users know. Everything else (the
// listen address, TLS, keepalive) is fixed at start.
var liveKeys = []struct {
	key      string
	duration func(*Rules) *time.Duration // nil for a limit
	limit    func(*Limits) *int
}{
	{key: "grpc.connectionTTL", duration: func(r *Rules) *time.Duration { return &r.ConnectionTTL }},
	{key: "intercept.inactiveBlockTimeout", duration: func(r *Rules) *time.Duration { return &r.InactiveBlockTimeout }},
	{key: "activity.reportInterval", duration: func(r *Rules) *time.Duration { return &r.ReportInterval }},
	{key: "limits.sessionsPerUser", limit: func(l *Limits) *int { return &l.SessionsPerUser }},
	{key: "limits.tcpFlowsPerSession", limit: func(l *Limits) *int { return &l.TCPFlowsPerSession }},
	{key: "limits.udpFlowsPerSession", limit: func(l *Limits) *int { return &l.UDPFlowsPerSession }},
	{key: "limits.interceptsPerSession", limit: func(l *Limits) *int { return &l.InterceptsPerSession }},
	{key: "limits.noticesPerSession", limit: func(l *Limits) *int { return &l.NoticesPerSession }},
}

// LiveKeys are the keys ParseLive reads and SetRules changes, sorted.
func LiveKeys() []string {
	keys := make([]string, len(liveKeys))
	for i, k := range liveKeys {
		keys[i] = k.key
	}
	slices.Sort(keys)
	return keys
}

// ParseLive reads the live keys from data, a configmap's data keyed by the
// names users know ("intercept.inactiveBlockTimeout": "5m"). An absent key
// takes its default (DefaultRules, DefaultLimits). Every bad value and
// every unknown key is an error that names the key, all of them joined in
// key order: a typo must not be taken silently for the default.
func ParseLive(data map[string]string) (Rules, Limits, error) {
	r, l := DefaultRules, DefaultLimits
	var errs []error
	for _, k := range liveKeys {
		v, ok := data[k.key]
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if k.duration != nil {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not a positive duration (e.g. 5m, 1h30m)", k.key, v))
				continue
			}
			*k.duration(&r) = d
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("%s: %q is not a positive whole number", k.key, v))
			continue
		}
		*k.limit(&l) = n
	}
	known := LiveKeys()
	var unknown []string
	for key := range data {
		if _, found := slices.BinarySearch(known, key); !found {
			unknown = append(unknown, key)
		}
	}
	slices.Sort(unknown)
	for _, key := range unknown {
		errs = append(errs, fmt.Errorf("%s: not a key the traffic manager changes while running (known: %s); keys fixed at start, such as grpc.keepaliveTime, are chart values that restart it", key, strings.Join(known, ", ")))
	}
	return r, l, errors.Join(errs...)
}

// checkLive refuses a non-positive value, naming its key.
func checkLive(r Rules, l Limits) error {
	var errs []error
	for _, k := range liveKeys {
		if k.duration != nil {
			if d := *k.duration(&r); d <= 0 {
				errs = append(errs, fmt.Errorf("%s: %s is not a positive duration", k.key, d))
			}
		} else if n := *k.limit(&l); n <= 0 {
			errs = append(errs, fmt.Errorf("%s: %d is not a positive whole number", k.key, n))
		}
	}
	return errors.Join(errs...)
}

// SetRules applies new rules and limits while the manager runs, as a whole:
// if any value is bad, it returns an error naming each bad key and the old
// values stay. A new intercept.inactiveBlockTimeout decides the next
// conflict and every view from now on; a new grpc.connectionTTL the
// reaper's next round; a new activity.reportInterval reaches each daemon
// with the answer to its next report (ReportResponse.report_interval_ms),
// and until then the manager judges it by the interval it last told it.
// New limits count from the next session, intercept or notice; live flows
// are not cut, but new ones count against the new flow limits.
func (s *Server) SetRules(r Rules, l Limits) error {
	if err := checkLive(r, l); err != nil {
		return err
	}
	s.mu.Lock()
	old, oldLimits := s.rules, s.limits
	s.rules, s.limits = r, l
	for _, sess := range s.sessions {
		sess.flows.setLimits(l)
	}
	s.mu.Unlock()
	var changed []any
	for _, k := range liveKeys {
		if k.duration != nil {
			if before, after := *k.duration(&old), *k.duration(&r); before != after {
				changed = append(changed, k.key, fmt.Sprintf("%s → %s", before, after))
			}
		} else if before, after := *k.limit(&oldLimits), *k.limit(&l); before != after {
			changed = append(changed, k.key, fmt.Sprintf("%d → %d", before, after))
		}
	}
	if len(changed) > 0 {
		s.log.Info("rules changed", changed...)
	}
	select {
	case s.rulesChanged <- struct{}{}:
	default: // the reaper has a change pending already
	}
	return nil
}

// Rules returns the rules and limits in force.
func (s *Server) Rules() (Rules, Limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rules, s.limits
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tether-dev/tether/manager/conflict"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
)

const (
	// cooldown is how long an intercept whose flow did not open gets no
	// traffic, so that the requests after it do not wait for it again.
	cooldown = 2 * time.Second
)

// routes is one routing table. It is never changed: the watcher builds a new
// one and swaps it in.
type routes struct {
	whole *target   // a GLOBAL intercept of the port or a REPLACE one: all traffic
	http  []*target // HTTP intercepts of the port, in the manager's order
	byID  map[string]*target
	desc  string // for logs and to notice changes
}

// target is where traffic goes: the app, or the owner of an intercept.
type target struct {
	id     string // "" for the app
	spec   *pb.InterceptSpec
	filter *conflict.Filter // HTTP intercepts; nil (invalid) matches nothing
	rt     splitTransport
	proxy  *httputil.ReverseProxy

	// downUntil is, on the agent's clock, when an intercept whose flow did
	// not open may get traffic again.
	downUntil atomic.Int64
}

func (t *target) String() string {
	if t.id == "" {
		return "app"
	}
	return "intercept " + t.id
}

func (t *target) down(now time.Duration) bool { return int64(now) < t.downUntil.Load() }

// pick chooses the target of an HTTP request; nil means the app.
func (rt *routes) pick(r *http.Request, now time.Duration) (*target, string) {
	if rt == nil {
		return nil, "no intercepts"
	}
	t, why := rt.whole, "whole traffic"
	if t == nil {
		// The manager's own matcher, so that routing agrees with its
		// conflict checks: anchored regexes, each tested against the
		// header's values joined with ", ", an absent header failing.
		header := func(name string) []string {
			if name == "host" { // net/http keeps it out of Header
				return []string{r.Host}
			}
			return r.Header.Values(name)
		}
		for _, c := range rt.http {
			if c.filter != nil && c.filter.Matches(header, r.URL.Path) {
				t, why = c, "filter matches"
				break
			}
		}
	}
	switch {
	case t == nil:
		return nil, "no filter matches"
	case t.down(now):
		return nil, t.String() + " unavailable"
	}
	return t, why
}

// setRoutes replaces the table with the given intercepts. Only the watcher
// calls it. Targets of unchanged intercepts carry over with their idle
// connections; those of removed ones drop theirs.
func (a *Agent) setRoutes(infos []*pb.InterceptInfo) {
	old := a.routes.Load()
	next := &routes{byID: map[string]*target{}}
	var desc []string
	for _, info := range infos {
		spec := info.GetSpec()
		if info.GetId() == "" || spec == nil || (info.State != "" && info.State != "ACTIVE") {
			continue
		}
		switch {
		case spec.Kind == pb.InterceptKind_REPLACE,
			spec.Kind == pb.InterceptKind_GLOBAL && spec.Port == uint32(a.cfg.Port),
			spec.Kind == pb.InterceptKind_HTTP && spec.Port == uint32(a.cfg.Port):
		default:
			continue // another port's, or a kind this agent does not know
		}
		if _, dup := next.byID[info.Id]; dup {
			continue
		}
		t := old.lookup(info.Id)
		if t == nil || !proto.Equal(t.spec, spec) {
			t = a.newTarget(info.Id, spec)
		}
		next.byID[info.Id] = t
		switch {
		case spec.Kind != pb.InterceptKind_HTTP:
			if next.whole == nil {
				next.whole = t
			}
		default:
			next.http = append(next.http, t)
		}
		desc = append(desc, describe(info.Id, spec))
	}
	next.desc = strings.Join(desc, ", ")
	a.routes.Store(next)
	for id, t := range old.all() {
		if next.byID[id] != t {
			t.rt.closeIdle()
		}
	}
	if old.describe() != next.desc {
		if next.desc == "" {
			a.log.Info("routes changed: everything goes to the app")
		} else {
			a.log.Info("routes changed", "intercepts", next.desc)
		}
	}
}

func (rt *routes) lookup(id string) *target {
	if rt == nil {
		return nil
	}
	return rt.byID[id]
}

func (rt *routes) all() map[string]*target {
	if rt == nil {
		return nil
	}
	return rt.byID
}

func (rt *routes) describe() string {
	if rt == nil {
		return ""
	}
	return rt.desc
}

func describe(id string, s *pb.InterceptSpec) string {
	d := fmt.Sprintf("%s(%s %s port %d", id, s.Name, s.Kind, s.Port)
	if s.Kind == pb.InterceptKind_HTTP {
		var names []string
		for _, n := range slices.Sorted(maps.Keys(s.Headers)) {
			names = append(names, n+"="+s.Headers[n])
		}
		if len(names) > 0 {
			d += " headers " + strings.Join(names, ",")
		}
		if s.Path != "" {
			d += " path " + s.Path
		}
	}
	return d + ")"
}

// bench keeps t from getting traffic for the cool-down after its flow did
// not open; it logs once per cool-down.
func (a *Agent) bench(t *target, err error) {
	if a.life.Err() != nil {
		return // stopping: not the intercept's fault
	}
	now := a.now()
	for {
		old := t.downUntil.Load()
		if int64(now) < old {
			return
		}
		if t.downUntil.CompareAndSwap(old, int64(now+cooldown)) {
			a.log.Warn("intercept unavailable: its traffic goes to the app for a while",
				"intercept", t.id, "for", cooldown, "error", err)
			return
		}
	}
}

// watch keeps the table in step with the manager until ctx ends. While the
// stream is down, the table is empty: everything goes to the app.
func (a *Agent) watch(ctx context.Context) {
	a.log.Info("watching routes", "manager", a.cfg.Manager, "workload", a.cfg.Workload, "port", a.cfg.Port)
	defer a.log.Info("stopped watching routes")
	defer a.setRoutes(nil)
	failures := 0
	for {
		received, err := a.watchOnce(ctx)
		a.setRoutes(nil)
		if ctx.Err() != nil {
			return
		}
		if received {
			failures = 0
		}
		d := tunnel.ReconnectDelay(failures)
		failures++
		if failures == 1 {
			a.log.Warn("route stream from the manager ended: everything goes to the app until it is back", "error", err, "retry_in", d)
		} else {
			a.log.Debug("manager still unavailable", "error", err, "retry_in", d)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// watchOnce follows one WatchAgent stream; it reports whether any table
// arrived.
func (a *Agent) watchOnce(ctx context.Context) (bool, error) {
	// The port declared here is one a replace intercept created while the
	// agent watches covers; the manager sends only intercepts that cover it.
	stream, err := a.mgr.WatchAgent(ctx, &pb.WatchAgentRequest{Workload: a.cfg.Workload, Ports: []uint32{uint32(a.cfg.Port)}})
	if err != nil {
		return false, fmt.Errorf("watch routes: %w", err)
	}
	received := false
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return received, errors.New("watch routes: the manager ended the stream")
		}
		if err != nil {
			return received, fmt.Errorf("watch routes: %w", err)
		}
		if !received {
			a.log.Info("route stream from the manager is up")
		}
		received = true
		a.setRoutes(m.Intercepts)
	}
}

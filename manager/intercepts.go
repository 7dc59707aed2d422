package manager

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/internal/buildinfo"
	"github.com/tether-dev/tether/manager/conflict"
	"github.com/tether-dev/tether/manager/rbac"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// Intercept states.
const (
	StateActive   = "ACTIVE"   // receives its traffic
	StateConflict = "CONFLICT" // superseded by a newer intercept; receives nothing
)

// An intercept's life:
//
//	create ──▶ ACTIVE ──superseded (owner idle > inactiveBlockTimeout)──▶ CONFLICT
//	             ▲                                                          │
//	             └──── the superseding intercept ended, nothing active ─────┘
//	                   conflicts any more
//
//	ACTIVE, CONFLICT ──leave, revoke, session end──▶ removed
type intercept struct {
	id      string
	seq     uint64 // creation order: the older flagged intercept is restored first
	spec    *pb.InterceptSpec
	c       conflict.Intercept
	owner   *session
	state   string
	message string
	// ports are the workload ports it covers, fixed at creation (see
	// coveredPortsLocked): flows on other ports are refused.
	ports []uint32
}

var errShuttingDown = status.Error(codes.Unavailable, "traffic manager shutting down")

// dialTimeout bounds how long an inbound flow waits for the owner's daemon.
const inboundDialTimeout = 5 * time.Second

// CreateIntercept implements pb.ManagerServer. Checking conflicts and
// creating or superseding happen under one lock: two users racing for the
// same workload cannot both win. With an Injector, a workload whose pods
// cannot take an agent is refused before anything changes, and a new
// intercept's agents are injected (a rollout); until they watch, the
// intercept waits for them as for agents started by hand.
func (s *Server) CreateIntercept(ctx context.Context, req *pb.CreateInterceptRequest) (*pb.InterceptInfo, error) {
	sess, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	spec := req.GetSpec()
	ci, err := toConflictIntercept(spec)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := checkSpecPorts(spec); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.mayCreate(ctx, sess, spec.Workload); err != nil {
		return nil, err
	}
	w, err := s.resolveWorkload(ctx, spec)
	if err != nil {
		return nil, err
	}
	if err := s.checkAgents(ctx, w, spec); err != nil {
		return nil, err
	}
	x, info, err := s.addIntercept(sess, spec, ci, w)
	if err != nil {
		return nil, err
	}
	if err := s.injectAgents(ctx, w, x); err != nil {
		return nil, err
	}
	return info, nil
}

// addIntercept creates sess's intercept of spec, or refuses it: checking
// conflicts and creating or superseding happen under one lock.
func (s *Server) addIntercept(sess *session, spec *pb.InterceptSpec, ci conflict.Intercept, w Workload) (*intercept, *pb.InterceptInfo, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[sess.id] != sess {
		return nil, nil, status.Error(codes.NotFound, "the session ended")
	}
	ports := s.coveredPortsLocked(spec, w)
	if len(ports) == 0 {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "replace intercept %q covers no port: no agent of %s has declared its ports; give --port or --to-port, or start the workload's agents first", spec.Name, spec.Workload)
	}
	for _, x := range s.intercepts {
		if x.owner == sess && x.spec.Name == spec.Name {
			return nil, nil, status.Errorf(codes.AlreadyExists, "you already have an intercept named %q", spec.Name)
		}
	}
	if err := s.interceptLimitLocked(sess); err != nil {
		return nil, nil, err
	}
	id := rand.Text()
	var superseded []string // messages, by position in olds
	var olds []*intercept
	for _, x := range s.sortedInterceptsLocked() {
		if x.state != StateActive {
			continue // a flagged intercept receives nothing, so it blocks nothing
		}
		ok, ex, why := conflict.Conflict(ci, x.c)
		if !ok {
			continue
		}
		idle, blocks := s.idle(x.owner, now)
		if x.owner == sess || blocks {
			s.metrics.conflicts.WithLabelValues(conflictRefused).Inc()
			return nil, nil, status.Error(codes.FailedPrecondition, s.blockedMessage(spec, x, ex, why, idle, now))
		}
		olds = append(olds, x)
		inactive := fmt.Sprintf("you were inactive for %s, longer than intercept.inactiveBlockTimeout (%s)", idle.Round(time.Second), s.rules.InactiveBlockTimeout)
		if _, known := x.owner.ledger.Idle(now); !known {
			inactive = "the traffic manager restarted and no report of yours has dated your last activity yet"
		}
		superseded = append(superseded, fmt.Sprintf("superseded by intercept %q (%s) of %s@%s: %s; a request both match: %s",
			spec.Name, id, sess.user, sess.host, inactive, exampleText(ex, why)))
	}
	s.seq++
	x := &intercept{id: id, seq: s.seq, spec: spec, c: ci, owner: sess, state: StateActive, ports: ports}
	s.intercepts[x.id] = x
	for i, old := range olds {
		old.state, old.message = StateConflict, superseded[i]
		s.metrics.conflicts.WithLabelValues(conflictSuperseded).Inc()
		s.log.Info("intercept superseded", "intercept", old.id, "owner", old.owner.user, "by", x.id, "user", sess.user)
		notify(old.owner.changed)
	}
	s.log.Info("intercept created", "intercept", x.id, "name", spec.Name, "user", sess.user, "workload", spec.Workload, "port", spec.Port, "kind", spec.Kind, "ports", ports)
	notify(sess.changed)
	s.notifyAgentsLocked(spec.Workload)
	return x, s.infoLocked(x, now), nil
}

// mayCreate checks, when a policy is set, that sess's user may create
// intercepts in the workload's namespace (rbac.CreateInterceptRequest).
func (s *Server) mayCreate(ctx context.Context, sess *session, workload string) error {
	if s.authz == nil {
		return nil
	}
	ns, _, _ := strings.Cut(workload, "/")
	ok, reason, err := rbac.Check(ctx, s.authz, rbac.Subject{User: sess.user, Groups: sess.groups}, rbac.CreateInterceptRequest(ns))
	if err != nil {
		return status.Errorf(codes.Internal, "authorization failed: %v", err)
	}
	if !ok {
		s.log.Warn("intercept refused", "user", sess.user, "workload", workload, "reason", reason)
		return status.Errorf(codes.PermissionDenied, "intercept refused: %s", reason)
	}
	return nil
}

// checkSpecPorts checks spec.Ports: workload ports of a replace intercept.
func checkSpecPorts(spec *pb.InterceptSpec) error {
	if len(spec.Ports) > 0 && spec.Kind != pb.InterceptKind_REPLACE {
		return fmt.Errorf("only a replace intercept covers ports besides its own")
	}
	for _, p := range spec.Ports {
		if p == 0 || p > 65535 {
			return fmt.Errorf("port %d is not a port", p)
		}
	}
	return nil
}

// coveredPortsLocked are the workload ports an intercept of spec covers,
// sorted: its own port and, for a replace intercept, the ports its owner
// maps, those Services target in w (known before the agents are injected)
// and those the workload's agents declared by now. An agent that
// declares a port later does not widen it: the owner's daemon dials only
// the local ports it agreed to when it created the intercept.
func (s *Server) coveredPortsLocked(spec *pb.InterceptSpec, w Workload) []uint32 {
	var ports []uint32
	if spec.Port != 0 {
		ports = append(ports, spec.Port)
	}
	if spec.Kind == pb.InterceptKind_REPLACE {
		ports = append(ports, spec.Ports...)
		for _, p := range w.Ports {
			ports = append(ports, uint32(p.Port))
		}
		for w := range s.agents[spec.Workload] {
			ports = append(ports, w.ports...)
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// blockedMessage explains a refusal: who holds the block, what conflicts,
// a request both match, and when the block lapses if the holder stays idle.
func (s *Server) blockedMessage(spec *pb.InterceptSpec, x *intercept, ex *conflict.Example, why string, idle time.Duration, now time.Time) string {
	left := s.rules.InactiveBlockTimeout - idle
	msg := fmt.Sprintf("intercept %q conflicts with intercept %q (%s) of %s@%s on %s port %d; a request both match: %s; %s has been idle for %s",
		spec.Name, x.spec.Name, x.id, x.owner.user, x.owner.host, x.spec.Workload, x.spec.Port, exampleText(ex, why), x.owner.user, idle.Round(time.Second))
	if left >= 0 {
		msg += fmt.Sprintf("; the block lapses at %s (in %s) if they stay idle", now.Add(left).UTC().Format(time.RFC3339), left.Round(time.Second))
	}
	return msg
}

func exampleText(ex *conflict.Example, why string) string {
	if ex == nil {
		return why
	}
	return fmt.Sprintf("%s (%s)", ex, why)
}

// RemoveIntercept implements pb.ManagerServer.
func (s *Server) RemoveIntercept(ctx context.Context, req *pb.RemoveInterceptRequest) (*pb.RemoveInterceptResponse, error) {
	sess, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.intercepts {
		if x.owner == sess && x.spec.Name == req.Name {
			s.removeInterceptLocked(x, s.now())
			s.log.Info("intercept left", "intercept", x.id, "name", x.spec.Name, "user", sess.user)
			return &pb.RemoveInterceptResponse{}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "you have no intercept named %q", req.Name)
}

// ListIntercepts implements pb.ManagerServer.
func (s *Server) ListIntercepts(ctx context.Context, _ *pb.ListInterceptsRequest) (*pb.ListInterceptsResponse, error) {
	if _, err := s.authenticate(ctx); err != nil {
		return nil, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &pb.ListInterceptsResponse{}
	for _, x := range s.sortedInterceptsLocked() {
		resp.Intercepts = append(resp.Intercepts, s.infoLocked(x, now))
	}
	for w, watchers := range s.agents {
		if len(watchers) > 0 {
			resp.Workloads = append(resp.Workloads, w)
		}
	}
	slices.Sort(resp.Workloads)
	return resp, nil
}

// RevokeIntercept implements pb.ManagerServer.
func (s *Server) RevokeIntercept(ctx context.Context, req *pb.RevokeInterceptRequest) (*pb.RevokeInterceptResponse, error) {
	sess, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if s.authz == nil {
		s.metrics.revokes.WithLabelValues("refused").Inc()
		return nil, status.Error(codes.PermissionDenied, "revoke is disabled: the traffic manager has no rbac.policyFile")
	}
	ok, reason, err := rbac.CanRevoke(ctx, s.authz, rbac.Subject{User: sess.user, Groups: sess.groups}, s.namespace)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "authorization failed: %v", err)
	}
	if !ok {
		s.log.Warn("revoke refused", "by", sess.user, "intercept", req.Id, "reason", reason)
		s.metrics.revokes.WithLabelValues("refused").Inc()
		return nil, status.Errorf(codes.PermissionDenied, "revoke refused: %s", reason)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.intercepts[req.Id]
	if x == nil {
		return nil, status.Errorf(codes.NotFound, "no intercept with id %q", req.Id)
	}
	info := s.infoLocked(x, now)
	// The owner hears of it through removeInterceptLocked's notification:
	// its watcher reads the notices under s.mu, after this.
	s.removeInterceptLocked(x, now)
	s.noticeLocked(x.owner, fmt.Sprintf("intercept %q (%s) revoked by %s at %s", x.spec.Name, x.id, sess.user, now.UTC().Format(time.RFC3339)))
	s.metrics.revokes.WithLabelValues("done").Inc()
	s.log.Info("intercept revoked", "by", sess.user, "intercept", x.id, "name", x.spec.Name, "owner", x.owner.user, "host", x.owner.host, "workload", x.spec.Workload)
	return &pb.RevokeInterceptResponse{Intercept: info}, nil
}

// removeInterceptLocked removes x and restores what it had superseded.
func (s *Server) removeInterceptLocked(x *intercept, now time.Time) {
	delete(s.intercepts, x.id)
	notify(x.owner.changed)
	for _, c := range s.sortedInterceptsLocked() {
		if c.state != StateConflict || c.spec.Workload != x.spec.Workload || s.activeConflictLocked(c) {
			continue
		}
		c.state = StateActive
		s.metrics.conflicts.WithLabelValues(conflictRestored).Inc()
		c.message = fmt.Sprintf("restored at %s: the intercept that superseded it ended", now.UTC().Format(time.RFC3339))
		s.log.Info("intercept restored", "intercept", c.id, "owner", c.owner.user)
		notify(c.owner.changed)
	}
	s.notifyAgentsLocked(x.spec.Workload)
}

func (s *Server) activeConflictLocked(c *intercept) bool {
	for _, y := range s.intercepts {
		if y != c && y.state == StateActive {
			if ok, _, _ := conflict.Conflict(c.c, y.c); ok {
				return true
			}
		}
	}
	return false
}

func (s *Server) sortedInterceptsLocked() []*intercept {
	out := make([]*intercept, 0, len(s.intercepts))
	for _, x := range s.intercepts {
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b *intercept) int { return int(a.seq - b.seq) })
	return out
}

func (s *Server) infoLocked(x *intercept, now time.Time) *pb.InterceptInfo {
	idle, blocks := s.idle(x.owner, now)
	return &pb.InterceptInfo{
		Id: x.id, Spec: x.spec, OwnerUser: x.owner.user, OwnerHost: x.owner.host,
		State: x.state, Message: x.message, OwnerIdleMs: idle.Milliseconds(),
		Blocks: x.state == StateActive && blocks, Ports: x.ports,
	}
}

func toConflictIntercept(spec *pb.InterceptSpec) (conflict.Intercept, error) {
	if spec == nil || spec.Name == "" {
		return conflict.Intercept{}, fmt.Errorf("an intercept needs a name")
	}
	if err := conflict.CheckWorkload(spec.Workload); err != nil {
		return conflict.Intercept{}, err
	}
	ci := conflict.Intercept{Workload: spec.Workload, Port: uint16(spec.Port)}
	if spec.Kind != pb.InterceptKind_REPLACE && (spec.Port == 0 || spec.Port > 65535) {
		return conflict.Intercept{}, fmt.Errorf("port %d is not a port", spec.Port)
	}
	switch spec.Kind {
	case pb.InterceptKind_REPLACE:
		ci.Kind = conflict.Replace
	case pb.InterceptKind_GLOBAL:
		ci.Kind = conflict.Global
	case pb.InterceptKind_HTTP:
		// As the agent compiles it: the same spec, the same verdict.
		f, err := conflict.Filter{Headers: spec.Headers, Path: spec.Path}.Compile()
		if err != nil {
			return conflict.Intercept{}, err
		}
		ci.Kind, ci.Filter = conflict.HTTP, f // with no condition, conflict treats it as global
	default:
		return conflict.Intercept{}, fmt.Errorf("unknown intercept kind %v", spec.Kind)
	}
	return ci, nil
}

// notify signals a change without blocking; one pending signal stands for
// any number of changes.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// watchStream is a session's current WatchSession stream.
type watchStream struct {
	stop context.CancelCauseFunc
}

// errWatchReplaced ends a watch stream that a newer one of its session
// replaced: a dead stream (a daemon that vanished without a FIN) must never
// take dials or notices meant for the live one.
var errWatchReplaced = errors.New("replaced by a newer WatchSession stream of this session")

// WatchSession implements pb.ManagerServer. A session has one watch stream:
// a new one ends the one before it.
func (s *Server) WatchSession(_ *pb.WatchSessionRequest, stream grpc.ServerStreamingServer[pb.SessionEvent]) error {
	sess, err := s.authenticate(stream.Context())
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancelCause(stream.Context())
	defer stop(nil)
	me := &watchStream{stop: stop}
	s.mu.Lock()
	if sess.watch != nil {
		sess.watch.stop(errWatchReplaced)
		s.log.Info("session watch replaced", "session", sess.id, "user", sess.user)
	}
	sess.watch = me
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if sess.watch == me {
			sess.watch = nil
		}
		s.mu.Unlock()
	}()
	send := func(subnets []string) error {
		now := s.now()
		s.mu.Lock()
		ev := &pb.SessionEvent{InterceptsChanged: true, Notice: strings.Join(sess.notices, "; "),
			Subnets: subnets, SubnetsChanged: subnets != nil}
		sess.notices = nil
		for _, x := range s.sortedInterceptsLocked() {
			if x.owner == sess {
				ev.Intercepts = append(ev.Intercepts, s.infoLocked(x, now))
			}
		}
		s.mu.Unlock()
		return stream.Send(ev)
	}
	// The first event carries the subnets too: they may have changed
	// while the daemon had no stream.
	subnets, subnetsChanged := s.subnetStrings()
	if err := send(subnets); err != nil {
		return err
	}
	for {
		select {
		case <-subnetsChanged:
			subnets, subnetsChanged = s.subnetStrings()
			if err := stream.Send(&pb.SessionEvent{Subnets: subnets, SubnetsChanged: true}); err != nil {
				return err
			}
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), errWatchReplaced) {
				return status.Error(codes.Aborted, errWatchReplaced.Error())
			}
			return nil
		case <-sess.ctx.Done():
			return status.Error(codes.NotFound, "the session ended")
		case <-sess.changed:
			if err := send(nil); err != nil {
				return err
			}
		case d := <-sess.dials:
			// A dial queued while no stream took it may be for an agent
			// that gave up: the local app must not get that connection.
			if !s.waiting(d.FlowId) {
				s.log.Debug("stale inbound dial dropped", "session", sess.id, "flow", d.FlowId)
				continue
			}
			if err := stream.Send(&pb.SessionEvent{Dial: d}); err != nil {
				return err
			}
		}
	}
}

// waiting reports whether inbound flow id still waits for its daemon.
func (s *Server) waiting(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.pending[id]
	return in != nil && !in.claimed
}

// agentWatch is one agent's WatchAgent stream.
type agentWatch struct {
	changed chan struct{}
	// ports are the workload ports the agent serves, as it declared them.
	ports []uint32
}

// covers reports whether x receives flows on one of w's ports.
func (w *agentWatch) covers(x *intercept) bool {
	for _, p := range w.ports {
		if slices.Contains(x.ports, p) {
			return true
		}
	}
	return false
}

// WatchAgent implements pb.ManagerServer. It needs the agent role and a
// binding to the workload (verb serve); the routes hold only intercepts
// that cover one of the ports the agent declared.
func (s *Server) WatchAgent(req *pb.WatchAgentRequest, stream grpc.ServerStreamingServer[pb.AgentRoutes]) error {
	id, err := s.authenticateAgent(stream.Context(), "WatchAgent")
	if err != nil {
		return err
	}
	agent := buildinfo.FromProto(req.Build).Side("the agent of "+req.Workload, wire.UpgradeAgent)
	if _, err := wire.Check(build.Side(wire.ManagerName, wire.UpgradeManager), agent); err != nil {
		s.log.Warn("agent refused: incompatible protocol", "workload", req.Workload, "agent_version", req.GetBuild().GetVersion(), "error", err)
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	if err := conflict.CheckWorkload(req.Workload); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if len(req.Ports) == 0 {
		return status.Error(codes.InvalidArgument, "WatchAgent needs the workload ports the agent serves")
	}
	for _, p := range req.Ports {
		if p == 0 || p > 65535 {
			return status.Errorf(codes.InvalidArgument, "port %d is not a port", p)
		}
	}
	if err := s.mayServe(stream.Context(), id, req.Workload); err != nil {
		return err
	}
	w := &agentWatch{changed: make(chan struct{}, 1), ports: slices.Clone(req.Ports)}
	s.mu.Lock()
	if s.agents[req.Workload] == nil {
		s.agents[req.Workload] = map[*agentWatch]struct{}{}
	}
	s.agents[req.Workload][w] = struct{}{}
	s.mu.Unlock()
	s.log.Info("agent watching", "workload", req.Workload, "ports", req.Ports, "agent", id.User)
	defer func() {
		s.mu.Lock()
		delete(s.agents[req.Workload], w)
		if len(s.agents[req.Workload]) == 0 {
			delete(s.agents, req.Workload)
		}
		s.mu.Unlock()
	}()
	notify(w.changed)
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case <-s.ctx.Done():
			return errShuttingDown
		case <-w.changed:
			now := s.now()
			s.mu.Lock()
			routes := &pb.AgentRoutes{}
			for _, x := range s.sortedInterceptsLocked() {
				if x.spec.Workload == req.Workload && x.state == StateActive && w.covers(x) {
					routes.Intercepts = append(routes.Intercepts, s.infoLocked(x, now))
				}
			}
			s.mu.Unlock()
			if err := stream.Send(routes); err != nil {
				return err
			}
		}
	}
}

func (s *Server) notifyAgentsLocked(workload string) {
	for w := range s.agents[workload] {
		notify(w.changed)
	}
}

// inbound is an inbound flow waiting for, then served by, the owner's
// daemon.
type inbound struct {
	owner *session // only its daemon may answer
	// claimed (guarded by Server.mu) is set when the owner's daemon took
	// the flow; it then dials its local port.
	claimed bool
	daemon  chan daemonSide // the daemon's answer arrives here
	gone    chan struct{}   // closed when the agent's side ended
}

type daemonSide struct {
	stream grpc.BidiStreamingServer[pb.Frame, pb.Frame]
	opened *pb.Opened
	done   chan error // the relay's result, for the daemon's handler
}

// AgentTunnel implements pb.ManagerServer. It needs the agent role, a
// binding to the intercept's workload, and a port the intercept covers.
func (s *Server) AgentTunnel(stream grpc.BidiStreamingServer[pb.Frame, pb.Frame]) error {
	id, err := s.authenticateAgent(stream.Context(), "AgentTunnel")
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil || open.InterceptId == "" {
		return status.Error(codes.InvalidArgument, "first frame must name the intercept")
	}
	refuse := func(st pb.OpenStatus, msg string) error {
		return stream.Send(&pb.Frame{Opened: &pb.Opened{Status: st, Error: msg}})
	}
	// The binding is checked outside the lock (an authorizer may ask an
	// API server), then the intercept again under it.
	s.mu.Lock()
	x := s.intercepts[open.InterceptId]
	s.mu.Unlock()
	if x == nil {
		return refuse(pb.OpenStatus_OPEN_REFUSED, "no active intercept "+open.InterceptId)
	}
	if err := s.mayServe(stream.Context(), id, x.spec.Workload); err != nil {
		return err
	}
	port := open.Port
	if port == 0 {
		port = x.spec.Port
	}
	if !slices.Contains(x.ports, port) {
		s.log.Warn("agent flow on an uncovered port refused", "agent", id.User, "intercept", x.id, "port", port, "covered", x.ports)
		return status.Errorf(codes.PermissionDenied, "intercept %s on %s does not cover port %d (it covers %v)", x.id, x.spec.Workload, port, x.ports)
	}
	flowID := rand.Text()
	in := &inbound{owner: x.owner, daemon: make(chan daemonSide, 1), gone: make(chan struct{})}
	s.mu.Lock()
	if s.intercepts[x.id] != x || x.state != StateActive {
		s.mu.Unlock()
		return refuse(pb.OpenStatus_OPEN_REFUSED, "no active intercept "+open.InterceptId)
	}
	owner := x.owner
	s.pending[flowID] = in
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, flowID)
		s.mu.Unlock()
		close(in.gone)
	}()
	select {
	case owner.dials <- &pb.InboundDial{FlowId: flowID, InterceptId: x.id, Source: open.Source, Port: port}:
	default:
		return refuse(pb.OpenStatus_OPEN_UNREACHABLE, "the intercepting client has too many flows waiting")
	}
	timer := time.NewTimer(inboundDialTimeout)
	defer timer.Stop()
	var d daemonSide
	select {
	case d = <-in.daemon:
	case <-timer.C:
		return refuse(pb.OpenStatus_OPEN_UNREACHABLE, "the intercepting client did not answer")
	case <-owner.ctx.Done():
		return refuse(pb.OpenStatus_OPEN_UNREACHABLE, "the intercepting client's session ended")
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
	if d.opened.GetStatus() != pb.OpenStatus_OPEN_OK {
		d.done <- nil
		return stream.Send(&pb.Frame{Opened: d.opened})
	}
	if err := stream.Send(&pb.Frame{Opened: d.opened}); err != nil {
		d.done <- err
		return err
	}
	err = s.relay(owner.ctx, stream, d.stream)
	d.done <- err
	return err
}

// InboundTunnel implements pb.ManagerServer: the owner's daemon claims a
// waiting flow, and only once the manager confirmed that it still waits
// does the daemon dial its local port and send the result.
func (s *Server) InboundTunnel(stream grpc.BidiStreamingServer[pb.Frame, pb.Frame]) error {
	sess, err := s.authenticate(stream.Context())
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	flowID := first.GetOpen().GetFlowId()
	s.mu.Lock()
	in := s.pending[flowID]
	switch {
	case in == nil:
		s.mu.Unlock()
		return status.Errorf(codes.NotFound, "no inbound flow %q is waiting: the agent gave up or it never existed", flowID)
	case in.owner != sess:
		s.mu.Unlock()
		s.log.Warn("inbound flow of another session refused", "session", sess.id, "user", sess.user, "flow", flowID)
		return status.Errorf(codes.PermissionDenied, "inbound flow %q belongs to another session's intercept", flowID)
	case in.claimed:
		s.mu.Unlock()
		return status.Errorf(codes.AlreadyExists, "inbound flow %q is answered already", flowID)
	}
	in.claimed = true
	s.mu.Unlock()
	if err := stream.Send(&pb.Frame{Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_OK}}); err != nil {
		return err
	}
	answer, err := stream.Recv()
	if err != nil {
		return err
	}
	opened := answer.GetOpened()
	if opened == nil {
		opened = &pb.Opened{Status: pb.OpenStatus_OPEN_REFUSED, Error: "the intercepting client sent no answer"}
	}
	d := daemonSide{stream: stream, opened: opened, done: make(chan error, 1)}
	in.daemon <- d // one claim per flow, and room for it
	select {
	case err := <-d.done:
		return err
	case <-in.gone:
		// The agent's side sends done before it ends, if it took d.
		select {
		case err := <-d.done:
			return err
		default:
		}
		return status.Errorf(codes.Aborted, "inbound flow %q: the agent gave up", flowID)
	case <-stream.Context().Done():
		return nil
	}
}

// relay pipes an agent's flow and a daemon's flow into each other. Both
// are server streams: a half-close (the client's CloseSend) becomes an EOF
// frame to the other side, and an error on either ends both.
func (s *Server) relay(ctx context.Context, agent, daemon grpc.BidiStreamingServer[pb.Frame, pb.Frame]) error {
	errc := make(chan error, 2)
	for _, dir := range [][2]grpc.BidiStreamingServer[pb.Frame, pb.Frame]{{daemon, agent}, {agent, daemon}} {
		if !s.tunnels.Go(func() { errc <- forward(dir[0], dir[1]) }) {
			errc <- errShuttingDown
		}
	}
	for range 2 {
		select {
		case err := <-errc:
			if err != nil {
				return status.Errorf(codes.Aborted, "inbound flow reset: %v", err)
			}
		case <-ctx.Done():
			return status.Error(codes.Unavailable, "the intercepting client's session ended")
		}
	}
	return nil
}

func forward(dst, src grpc.BidiStreamingServer[pb.Frame, pb.Frame]) error {
	var f pb.Frame
	for {
		if err := src.RecvMsg(&f); err != nil {
			if err == io.EOF {
				return dst.Send(&pb.Frame{Control: pb.Control_EOF})
			}
			return err
		}
		if len(f.Data) > 0 {
			if err := dst.Send(&pb.Frame{Data: f.Data}); err != nil {
				return err
			}
		}
	}
}

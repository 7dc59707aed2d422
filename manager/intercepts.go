package manager

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/manager/conflict"
	"github.com/tether-dev/tether/manager/rbac"
	pb "github.com/tether-dev/tether/rpc/manager"
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
}

var errShuttingDown = status.Error(codes.Unavailable, "traffic manager shutting down")

// dialTimeout bounds how long an inbound flow waits for the owner's daemon.
const inboundDialTimeout = 5 * time.Second

// CreateIntercept implements pb.ManagerServer. Checking conflicts and
// creating or superseding happen under one lock: two users racing for the
// same workload cannot both win.
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
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[sess.id] != sess {
		return nil, status.Error(codes.NotFound, "the session ended")
	}
	for _, x := range s.intercepts {
		if x.owner == sess && x.spec.Name == spec.Name {
			return nil, status.Errorf(codes.AlreadyExists, "you already have an intercept named %q", spec.Name)
		}
	}
	if err := s.interceptLimitLocked(sess); err != nil {
		return nil, err
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
			return nil, status.Error(codes.FailedPrecondition, s.blockedMessage(spec, x, ex, why, idle, now))
		}
		olds = append(olds, x)
		superseded = append(superseded, fmt.Sprintf("superseded by intercept %q (%s) of %s@%s: you were inactive for %s, longer than intercept.inactiveBlockTimeout (%s); a request both match: %s",
			spec.Name, id, sess.user, sess.host, idle.Round(time.Second), s.rules.InactiveBlockTimeout, exampleText(ex, why)))
	}
	s.seq++
	x := &intercept{id: id, seq: s.seq, spec: spec, c: ci, owner: sess, state: StateActive}
	s.intercepts[x.id] = x
	for i, old := range olds {
		old.state, old.message = StateConflict, superseded[i]
		s.log.Info("intercept superseded", "intercept", old.id, "owner", old.owner.user, "by", x.id, "user", sess.user)
		notify(old.owner.changed)
	}
	s.log.Info("intercept created", "intercept", x.id, "name", spec.Name, "user", sess.user, "workload", spec.Workload, "port", spec.Port, "kind", spec.Kind)
	notify(sess.changed)
	s.notifyAgentsLocked(spec.Workload)
	return s.infoLocked(x, now), nil
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
	return resp, nil
}

// RevokeIntercept implements pb.ManagerServer.
func (s *Server) RevokeIntercept(ctx context.Context, req *pb.RevokeInterceptRequest) (*pb.RevokeInterceptResponse, error) {
	sess, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if s.authz == nil {
		return nil, status.Error(codes.PermissionDenied, "revoke is disabled: the traffic manager has no rbac.policyFile")
	}
	ok, reason, err := rbac.CanRevoke(ctx, s.authz, rbac.Subject{User: sess.user, Groups: sess.groups}, s.namespace)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "authorization failed: %v", err)
	}
	if !ok {
		s.log.Warn("revoke refused", "by", sess.user, "intercept", req.Id, "reason", reason)
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
		Blocks: x.state == StateActive && blocks,
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

// WatchSession implements pb.ManagerServer.
func (s *Server) WatchSession(_ *pb.WatchSessionRequest, stream grpc.ServerStreamingServer[pb.SessionEvent]) error {
	sess, err := s.authenticate(stream.Context())
	if err != nil {
		return err
	}
	send := func() error {
		now := s.now()
		s.mu.Lock()
		ev := &pb.SessionEvent{InterceptsChanged: true, Notice: strings.Join(sess.notices, "; ")}
		sess.notices = nil
		for _, x := range s.sortedInterceptsLocked() {
			if x.owner == sess {
				ev.Intercepts = append(ev.Intercepts, s.infoLocked(x, now))
			}
		}
		s.mu.Unlock()
		return stream.Send(ev)
	}
	if err := send(); err != nil {
		return err
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case <-sess.ctx.Done():
			return status.Error(codes.NotFound, "the session ended")
		case <-sess.changed:
			if err := send(); err != nil {
				return err
			}
		case d := <-sess.dials:
			if err := stream.Send(&pb.SessionEvent{Dial: d}); err != nil {
				return err
			}
		}
	}
}

// WatchAgent implements pb.ManagerServer.
func (s *Server) WatchAgent(req *pb.WatchAgentRequest, stream grpc.ServerStreamingServer[pb.AgentRoutes]) error {
	if err := s.authenticateAgent(stream.Context()); err != nil {
		return err
	}
	changed := make(chan struct{}, 1)
	s.mu.Lock()
	if s.agents[req.Workload] == nil {
		s.agents[req.Workload] = map[chan struct{}]struct{}{}
	}
	s.agents[req.Workload][changed] = struct{}{}
	s.mu.Unlock()
	s.log.Info("agent watching", "workload", req.Workload)
	defer func() {
		s.mu.Lock()
		delete(s.agents[req.Workload], changed)
		s.mu.Unlock()
	}()
	notify(changed)
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case <-s.ctx.Done():
			return errShuttingDown
		case <-changed:
			now := s.now()
			s.mu.Lock()
			routes := &pb.AgentRoutes{}
			for _, x := range s.sortedInterceptsLocked() {
				if x.spec.Workload == req.Workload && x.state == StateActive {
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
	for ch := range s.agents[workload] {
		notify(ch)
	}
}

// authenticateAgent admits agents: with auth.tokenFile, by a known token.
func (s *Server) authenticateAgent(ctx context.Context) error {
	_, err := s.identify(ctx, "")
	return err
}

// inbound is an inbound flow waiting for, then served by, the owner's
// daemon.
type inbound struct {
	daemon chan daemonSide // the daemon's InboundTunnel arrives here
}

type daemonSide struct {
	stream grpc.BidiStreamingServer[pb.Frame, pb.Frame]
	opened *pb.Opened
	done   chan error // the relay's result, for the daemon's handler
}

// AgentTunnel implements pb.ManagerServer.
func (s *Server) AgentTunnel(stream grpc.BidiStreamingServer[pb.Frame, pb.Frame]) error {
	if err := s.authenticateAgent(stream.Context()); err != nil {
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
	flowID := rand.Text()
	in := &inbound{daemon: make(chan daemonSide, 1)}
	s.mu.Lock()
	x := s.intercepts[open.InterceptId]
	if x == nil || x.state != StateActive {
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
	}()
	select {
	case owner.dials <- &pb.InboundDial{FlowId: flowID, InterceptId: x.id, Source: open.Source, Port: open.Port}:
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

// InboundTunnel implements pb.ManagerServer.
func (s *Server) InboundTunnel(stream grpc.BidiStreamingServer[pb.Frame, pb.Frame]) error {
	if _, err := s.authenticate(stream.Context()); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	flowID := first.GetOpen().GetFlowId()
	s.mu.Lock()
	in := s.pending[flowID]
	s.mu.Unlock()
	if in == nil {
		return status.Errorf(codes.NotFound, "no inbound flow %q is waiting", flowID)
	}
	d := daemonSide{stream: stream, opened: first.GetOpened(), done: make(chan error, 1)}
	select {
	case in.daemon <- d:
	default:
		return status.Errorf(codes.AlreadyExists, "inbound flow %q is answered already", flowID)
	}
	select {
	case err := <-d.done:
		return err
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

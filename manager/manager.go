package manager

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/activity"
	"github.com/tether-dev/tether/manager/rbac"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
)

// Metadata keys that carry the session credentials on every call after
// Arrive.
const (
	MDSession = "tether-session"
	MDSecret  = "tether-secret"
)

// Version is reported to daemons.
const Version = "0.1.0"

// Config configures the manager.
type Config struct {
	// Subnets are the cluster networks that daemons route and that flows
	// may reach.
	Subnets        []netip.Prefix
	DialTimeout    time.Duration
	UDPIdleTimeout time.Duration
	Rules          Rules
	// Authorizer decides revokes, intercept creation and which workloads
	// each agent serves (rbac.policyFile). Nil disables revoke and lets
	// every agent serve every workload. It needs Tokens: RBAC must judge
	// authenticated identities, not names clients claim.
	Authorizer rbac.Authorizer
	// Namespace is manager.namespace; DefaultNamespace when empty.
	Namespace string
	// Tokens identify users (auth.tokenFile). Nil: unauthenticated
	// development mode, where users are who their OS says they are.
	Tokens Tokens
	// DNSDomains are resolved for daemons (dns.domains);
	// DefaultDNSDomains when empty. DNSServer (dns.server, host:port) is
	// the resolver to ask; the system's when empty.
	DNSDomains []string
	DNSServer  string
	// DNSSearch (dns.search) are search domains daemons configure, so
	// short names resolve ("web" in "default.svc.cluster.local").
	DNSSearch []string
	// Limits bound sessions, flows, intercepts and notices (limits.*).
	Limits Limits
	// Now is the manager's clock; time.Now when nil. Tests inject one.
	Now func() time.Time
	Log *slog.Logger
}

// Rules are the activity rules, under the configuration names users know.
type Rules struct {
	// ConnectionTTL (grpc.connectionTTL) ends a session inactive for longer.
	ConnectionTTL time.Duration
	// InactiveBlockTimeout (intercept.inactiveBlockTimeout): an owner
	// inactive for longer no longer blocks conflicting intercepts.
	InactiveBlockTimeout time.Duration
	// ReportInterval (activity.reportInterval) is sent to daemons.
	ReportInterval time.Duration
}

// DefaultNamespace is where the traffic-manager configmap is, for RBAC.
const DefaultNamespace = rbac.DefaultNamespace

// DefaultRules are the rules when nothing is configured.
var DefaultRules = Rules{ConnectionTTL: 24 * time.Hour, InactiveBlockTimeout: 10 * time.Minute, ReportInterval: 30 * time.Second}

// Server implements the Manager gRPC service.
type Server struct {
	pb.UnimplementedManagerServer
	subnets []netip.Prefix
	tunnels *tunnel.Server
	rules   Rules
	limits  Limits
	tokens  Tokens
	now     func() time.Time
	log     *slog.Logger
	reaper  chan struct{} // closed when the reaper returns
	metrics metrics

	// ctx is alive until Shutdown; every session's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards sessions, ended and every session's ledger.
	mu       sync.Mutex
	sessions map[string]*session
	ended    map[string]ending // sessions the manager ended, so their daemons learn why
	// intercepts by id; seq orders them by creation.
	intercepts map[string]*intercept
	seq        uint64
	// agents: workload -> its watching agents; a workload without agents
	// has no entry.
	agents map[string]map[*agentWatch]struct{}
	// pending inbound flows by flow id, waiting for the owner's daemon.
	pending map[string]*inbound

	dnsDomains []string
	dnsSearch  []string
	resolver   *net.Resolver

	authz     rbac.Authorizer // nil: revoke disabled
	namespace string          // manager.namespace, where the traffic-manager configmap lives
}

// ending is why and when the manager ended a session.
type ending struct {
	reason string
	at     time.Time
}

type session struct {
	id     string
	secret [sha256.Size]byte // SHA-256 of the secret: the secret itself is never kept
	user   string
	groups []string // from the token file; RBAC subjects
	host   string
	ledger *activity.Ledger
	// changed signals the session's watcher that its intercepts changed;
	// dials carries inbound flows to it. notices (guarded by Server.mu)
	// are messages for the owner, sent with the next change.
	changed chan struct{}
	dials   chan *pb.InboundDial
	notices []string
	// watch is the session's one WatchSession stream (guarded by
	// Server.mu); a newer stream ends it.
	watch *watchStream
	flows *flowLimits // shared by the session's Tunnel streams
	// ctx ends with the session; its flows derive from it.
	ctx    context.Context
	cancel context.CancelFunc
}

// New returns a manager serving cfg.Subnets.
func New(cfg Config) (*Server, error) {
	if len(cfg.Subnets) == 0 {
		return nil, errors.New("manager: no subnets to serve")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Authorizer != nil && cfg.Tokens == nil {
		return nil, errors.New("manager: rbac.policyFile needs auth.tokenFile: without tokens RBAC would judge the user name each client claims")
	}
	r := cfg.Rules
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&r.ConnectionTTL, DefaultRules.ConnectionTTL}, {&r.InactiveBlockTimeout, DefaultRules.InactiveBlockTimeout}, {&r.ReportInterval, DefaultRules.ReportInterval}} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return nil, fmt.Errorf("manager: negative duration in %+v", r)
		}
	}
	limits, err := cfg.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Log.With("component", "manager")
	s := &Server{
		subnets:  cfg.Subnets,
		tunnels:  tunnel.NewServer(cfg.DialTimeout, cfg.UDPIdleTimeout, cfg.Log),
		rules:    r,
		limits:   limits,
		tokens:   cfg.Tokens,
		now:      cfg.Now,
		log:      log,
		sessions: make(map[string]*session),
		ended:    make(map[string]ending),
		reaper:   make(chan struct{}),
		metrics:  newMetrics(),

		intercepts: make(map[string]*intercept),
		agents:     make(map[string]map[*agentWatch]struct{}),
		pending:    make(map[string]*inbound),
		authz:      cfg.Authorizer,
		dnsDomains: cfg.DNSDomains,
		dnsSearch:  cfg.DNSSearch,
		resolver:   newResolver(cfg.DNSServer),
		namespace:  cmp.Or(cfg.Namespace, DefaultNamespace),
	}
	if len(s.dnsDomains) == 0 {
		s.dnsDomains = DefaultDNSDomains
	}
	if s.tokens == nil {
		log.Warn("unauthenticated development mode: no auth.tokenFile, users are who their OS user name says and anyone may be an agent")
	} else if s.authz == nil {
		log.Warn("no rbac.policyFile binds agents to workloads: every agent token (group " + AgentGroup + ") may serve every workload")
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.reap()
	return s, nil
}

// reap ends sessions whose TTL ran out. A check every 1/8 of the TTL (at
// most a second apart) ends them within that much of the deadline.
func (s *Server) reap() {
	defer close(s.reaper)
	every := min(max(s.rules.ConnectionTTL/8, 100*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.Expire(s.now())
		}
	}
}

// Expire ends every session inactive for longer than the connection TTL at
// now, exactly as a Depart would, and remembers why.
func (s *Server) Expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sess := range s.sessions {
		if !sess.ledger.Expired(now, s.rules.ConnectionTTL) {
			continue
		}
		reason := fmt.Sprintf("session ended by the traffic manager: inactive for %s (grpc.connectionTTL)", s.rules.ConnectionTTL)
		s.endLocked(sess, reason, now)
		s.metrics.expirations.Inc()
		s.log.Info("session expired", "session", id, "user", sess.user, "host", sess.host,
			"last_activity", sess.ledger.LastActivity().Format(time.RFC3339), "ttl", s.rules.ConnectionTTL)
	}
	// Remember endings for one TTL: long enough for a sleeping laptop to
	// learn why, bounded in memory.
	for id, e := range s.ended {
		if now.Sub(e.at) > s.rules.ConnectionTTL {
			delete(s.ended, id)
		}
	}
}

// endLocked forgets sess, removes its intercepts and ends its flows.
func (s *Server) endLocked(sess *session, reason string, now time.Time) {
	delete(s.sessions, sess.id)
	s.ended[sess.id] = ending{reason: reason, at: now}
	for _, x := range s.sortedInterceptsLocked() {
		if x.owner == sess {
			s.removeInterceptLocked(x, now)
		}
	}
	sess.cancel()
}

// Register registers the service on g.
func (s *Server) Register(g *grpc.Server) { pb.RegisterManagerServer(g, s) }

// Shutdown ends every session's flows and waits for their goroutines. The
// caller stops the grpc.Server afterwards.
func (s *Server) Shutdown() {
	s.cancel()
	<-s.reaper
	s.tunnels.Close()
}

// identify returns the caller's identity: from its bearer token, or in
// development mode from what the client says.
func (s *Server) identify(ctx context.Context, claimed string) (Identity, error) {
	if s.tokens == nil {
		return Identity{User: claimed}, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	tok := bearer(first(md, tunnel.MDAuthorization))
	if tok == "" {
		s.log.Warn("call without a bearer token refused")
		return Identity{}, status.Error(codes.Unauthenticated, "the traffic manager requires a token: pass --token-file or set TETHER_TOKEN")
	}
	id, ok := s.tokens[tok]
	if !ok {
		s.log.Warn("call with an unknown token refused")
		return Identity{}, status.Error(codes.Unauthenticated, "the traffic manager does not know this token")
	}
	return id, nil
}

// Arrive implements pb.ManagerServer.
func (s *Server) Arrive(ctx context.Context, req *pb.ArriveRequest) (*pb.ArriveResponse, error) {
	if err := s.refuseAgent(ctx, "Arrive"); err != nil {
		return nil, err
	}
	subnets := make([]string, len(s.subnets))
	for i, p := range s.subnets {
		subnets[i] = p.String()
	}
	resp := &pb.ArriveResponse{
		Subnets: subnets, ManagerVersion: Version,
		ConnectionTtlMs:        s.rules.ConnectionTTL.Milliseconds(),
		InactiveBlockTimeoutMs: s.rules.InactiveBlockTimeout.Milliseconds(),
		ReportIntervalMs:       s.rules.ReportInterval.Milliseconds(),
		DnsDomains:             s.dnsDomains,
		DnsSearch:              s.dnsSearch,
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.ResumeSessionId != "" {
		if sess := s.sessions[req.ResumeSessionId]; sess != nil && sess.secretMatches(req.ResumeSessionSecret) {
			sess.ledger.Arrived(now, req.DaemonInstance, req.ByCli)
			resp.SessionId, resp.SessionSecret, resp.Resumed, resp.User = sess.id, req.ResumeSessionSecret, true, sess.user
			s.log.Info("session resumed", "session", sess.id, "user", sess.user, "host", sess.host, "by_cli", req.ByCli)
			return resp, nil
		}
	}
	who, err := s.identify(ctx, req.User)
	if err != nil {
		return nil, err
	}
	if err := s.sessionLimitLocked(who.User); err != nil {
		return nil, err
	}
	id, secret := rand.Text()[:16], rand.Text()
	sess := &session{id: id, secret: sha256.Sum256([]byte(secret)), user: who.User, groups: who.Groups, host: req.Host,
		ledger: activity.NewLedger(now, req.DaemonInstance), changed: make(chan struct{}, 1), dials: make(chan *pb.InboundDial, 64),
		flows: newFlowLimits(s.limits, s.log.With("session", id, "user", who.User))}
	sess.ctx, sess.cancel = context.WithCancel(s.ctx)
	s.sessions[id] = sess
	s.log.Info("session opened", "session", id, "user", who.User, "host", req.Host, "daemon", req.DaemonInstance)
	resp.SessionId, resp.SessionSecret, resp.User = id, secret, who.User
	return resp, nil
}

// Depart implements pb.ManagerServer.
func (s *Server) Depart(ctx context.Context, _ *pb.DepartRequest) (*pb.DepartResponse, error) {
	sess, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.endLocked(sess, "quit by the user", s.now())
	s.mu.Unlock()
	s.log.Info("session departed", "session", sess.id, "user", sess.user)
	return &pb.DepartResponse{}, nil
}

// Tunnel implements pb.ManagerServer.
func (s *Server) Tunnel(stream grpc.BidiStreamingServer[pb.Frame, pb.Frame]) error {
	sess, err := s.authenticate(stream.Context())
	if err != nil {
		return err
	}
	return s.tunnels.Serve(sess.ctx, stream, s.allowed, sess.flows)
}

// Report implements pb.ManagerServer.
func (s *Server) Report(ctx context.Context, req *pb.ReportRequest) (*pb.ReportResponse, error) {
	sess, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	r := activity.Report{Instance: req.DaemonInstance}
	if a := req.Activity; a != nil {
		r.HasActivity, r.Events, r.IdleFor = true, a.Events, time.Duration(a.IdleForMs)*time.Millisecond
	}
	s.metrics.reports.Inc()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.ledger.Apply(now, r) {
		s.log.Debug("activity", "session", sess.id, "user", sess.user, "idle_for", r.IdleFor)
	}
	return &pb.ReportResponse{Session: s.viewLocked(sess, now)}, nil
}

// Sessions implements pb.ManagerServer.
func (s *Server) Sessions(ctx context.Context, _ *pb.SessionsRequest) (*pb.SessionsResponse, error) {
	if _, err := s.authenticate(ctx); err != nil {
		return nil, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &pb.SessionsResponse{}
	for _, sess := range s.sessions {
		resp.Sessions = append(resp.Sessions, s.viewLocked(sess, now))
	}
	slices.SortFunc(resp.Sessions, func(a, b *pb.SessionView) int { return strings.Compare(a.User+a.SessionId, b.User+b.SessionId) })
	return resp, nil
}

// idle is how long sess has been inactive at now, and whether its
// intercepts still block conflicting ones (intercept.inactiveBlockTimeout).
func (s *Server) idle(sess *session, now time.Time) (time.Duration, bool) {
	d := max(now.Sub(sess.ledger.LastActivity()), 0)
	return d, d <= s.rules.InactiveBlockTimeout
}

func (s *Server) viewLocked(sess *session, now time.Time) *pb.SessionView {
	l := sess.ledger
	idle, blocks := s.idle(sess, now)
	blockLeft := max(s.rules.InactiveBlockTimeout-idle, 0)
	return &pb.SessionView{
		SessionId: sess.id, User: sess.user, Host: sess.host,
		State:            l.State(now, s.rules.InactiveBlockTimeout, s.rules.ReportInterval).String(),
		IdleMs:           idle.Milliseconds(),
		HoldsBlockRight:  blocks,
		BlockRightLeftMs: blockLeft.Milliseconds(),
		TtlLeftMs:        max(s.rules.ConnectionTTL-idle, 0).Milliseconds(),
		SinceReportMs:    max(now.Sub(l.LastReport()), 0).Milliseconds(),
	}
}

// allowed reports whether a flow may reach addr: only the cluster subnets,
// so a daemon cannot use the manager as an open proxy.
func (s *Server) allowed(addr netip.Addr) bool {
	for _, p := range s.subnets {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// authenticate finds the caller's session from the metadata. Failures are
// logged and never acted on.
func (s *Server) authenticate(ctx context.Context) (*session, error) {
	if err := s.refuseAgent(ctx, methodName(ctx)); err != nil {
		return nil, err
	}
	md, _ := metadata.FromIncomingContext(ctx)
	id, secret := first(md, MDSession), first(md, MDSecret)
	if id == "" || secret == "" {
		s.log.Warn("call without session credentials refused")
		return nil, status.Error(codes.Unauthenticated, "no session: call Arrive first")
	}
	s.mu.Lock()
	sess, ended := s.sessions[id], s.ended[id]
	s.mu.Unlock()
	if sess == nil && ended.reason != "" {
		return nil, status.Error(codes.NotFound, ended.reason)
	}
	if sess == nil {
		return nil, status.Errorf(codes.Unauthenticated, "unknown session %s", id)
	}
	if !sess.secretMatches(secret) {
		s.log.Warn("wrong session secret refused", "session", id)
		return nil, status.Errorf(codes.Unauthenticated, "wrong secret for session %s", id)
	}
	return sess, nil
}

func (sess *session) secretMatches(secret string) bool {
	h := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(h[:], sess.secret[:]) == 1
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

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
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/activity"
	"github.com/tether-dev/tether/internal/buildinfo"
	"github.com/tether-dev/tether/manager/rbac"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/wire"
)

// build is this manager's build, reported to daemons at Arrive.
var build = buildinfo.Read()

// Config configures the manager.
type Config struct {
	// Subnets are the configured cluster networks (subnets) that daemons
	// route and that flows may reach; SetSubnets adds the discovered ones.
	// Empty only with DiscoverSubnets.
	Subnets []netip.Prefix
	// DiscoverSubnets: the cluster's networks come from SetSubnets
	// (kube.discoverSubnets), so Subnets may be empty.
	DiscoverSubnets bool
	DialTimeout     time.Duration
	UDPIdleTimeout  time.Duration
	Rules           Rules
	// Authorizer decides revokes, intercept creation and which workloads
	// each agent serves (rbac.policyFile). Nil disables revoke and lets
	// every agent serve every workload. It needs an Authenticator: RBAC must judge
	// authenticated identities, not names clients claim.
	Authorizer rbac.Authorizer
	// Namespace is manager.namespace; DefaultNamespace when empty.
	Namespace string
	// Authenticator identifies callers by their bearer tokens: Tokens
	// (auth.tokenFile) or the API server (auth.mode kubernetes). Nil:
	// unauthenticated development mode, where users are who their OS says
	// they are.
	Authenticator Authenticator
	// DNSDomains are resolved for daemons (dns.domains);
	// DefaultDNSDomains when empty. DNSServer (dns.server, host:port) is
	// the resolver to ask; the system's when empty.
	DNSDomains []string
	DNSServer  string
	// DNSSearch (dns.search) are search domains daemons configure, so
	// short names resolve ("web" in "default.svc.cluster.local").
	DNSSearch []string
	// ClusterDomain (dns.clusterDomain) makes the search domains of a
	// session with a namespace: NS.svc.DOMAIN, svc.DOMAIN, DOMAIN;
	// DefaultClusterDomain when empty.
	ClusterDomain string
	// Limits bound sessions, flows, intercepts and notices (limits.*).
	Limits Limits
	// Injector puts agents into intercepted workloads' pods (webhook.port);
	// nil in the namespace lab, where agents are started by hand.
	Injector Injector
	// Workloads finds the cluster's workloads (kube/workloads), so that an
	// intercept of an unknown workload or port is refused before anything
	// changes. Nil in the namespace lab: workloads are what agents declare.
	Workloads Workloads
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
	configured []netip.Prefix // subnets, never removed by discovery
	// subnets is what is served now: configured ∪ discovered. Written
	// under mu (SetSubnets); read without it by every flow's check.
	subnets atomic.Pointer[[]netip.Prefix]
	tunnels *tunnel.Server
	authn   Authenticator // nil: development mode
	now     func() time.Time
	log     *slog.Logger
	reaper  chan struct{} // closed when the reaper returns
	// rulesChanged wakes the reaper to pace itself by a new
	// grpc.connectionTTL.
	rulesChanged chan struct{}
	metrics      metrics

	// ctx is alive until Shutdown; every session's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards rules, limits, sessions, ended and every session's
	// ledger. Rules and limits change while running (SetRules).
	mu       sync.Mutex
	rules    Rules
	limits   Limits
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
	// subnetsChanged is closed when subnets change, and replaced.
	subnetsChanged chan struct{}

	clusterDomain string
	dnsDomains    []string
	dnsSearch     []string
	resolver      *net.Resolver

	workloads Workloads       // nil: the namespace lab
	authz     rbac.Authorizer // nil: revoke disabled
	injector  Injector        // nil: agents started by hand
	namespace string          // manager.namespace, where the traffic-manager configmap lives
}

// ending is why and when the manager ended a session, and the hash of its
// secret: only its owner learns that it ended.
type ending struct {
	reason string
	at     time.Time
	secret [sha256.Size]byte
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
	// reportInterval is the activity.reportInterval the daemon was last
	// told (guarded by Server.mu): it reports at that pace until its next
	// answer, so the manager judges it by that, not by a newer rule.
	reportInterval time.Duration
	// ctx ends with the session; its flows derive from it.
	ctx    context.Context
	cancel context.CancelFunc
}

// New returns a manager serving cfg.Subnets.
func New(cfg Config) (*Server, error) {
	if len(cfg.Subnets) == 0 && !cfg.DiscoverSubnets {
		return nil, errors.New("manager: no subnets to serve: configure subnets (--subnet), or discover them from the cluster (kube.discoverSubnets)")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Authorizer != nil && cfg.Authenticator == nil {
		return nil, errors.New("manager: an authorizer (rbac.policyFile, auth.mode kubernetes) needs an authenticator (auth.tokenFile, auth.mode kubernetes): without one RBAC would judge the user name each client claims")
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
		configured: unionPrefixes(cfg.Subnets),
		tunnels:    tunnel.NewServer(cfg.DialTimeout, cfg.UDPIdleTimeout, cfg.Log),
		rules:      r,
		limits:     limits,
		authn:      cfg.Authenticator,
		now:        cfg.Now,
		log:        log,
		sessions:   make(map[string]*session),
		ended:      make(map[string]ending),
		reaper:     make(chan struct{}),

		rulesChanged: make(chan struct{}, 1),
		metrics:      newMetrics(),

		intercepts: make(map[string]*intercept),
		agents:     make(map[string]map[*agentWatch]struct{}),
		pending:    make(map[string]*inbound),

		subnetsChanged: make(chan struct{}),
		clusterDomain:  strings.Trim(cmp.Or(cfg.ClusterDomain, DefaultClusterDomain), "."),
		workloads:      cfg.Workloads,
		authz:          cfg.Authorizer,
		injector:       cfg.Injector,
		dnsDomains:     cfg.DNSDomains,
		dnsSearch:      cfg.DNSSearch,
		resolver:       newResolver(cfg.DNSServer),
		namespace:      cmp.Or(cfg.Namespace, DefaultNamespace),
	}
	s.subnets.Store(&s.configured)
	if len(s.dnsDomains) == 0 {
		s.dnsDomains = DefaultDNSDomains
	}
	if !wire.InDomains(s.clusterDomain, s.dnsDomains) {
		log.Warn("dns.clusterDomain is outside dns.domains: the daemons do not resolve the namespace's search domains through the manager", "dns.clusterDomain", s.clusterDomain, "dns.domains", s.dnsDomains)
	}
	if s.authn == nil {
		log.Warn("unauthenticated development mode: no auth.tokenFile, users are who their OS user name says and anyone may be an agent")
	} else if s.authz == nil {
		log.Warn("no rbac.policyFile binds agents to workloads: every agent token (group " + AgentGroup + ") may serve every workload")
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.reap()
	return s, nil
}

// reap ends sessions whose TTL ran out. A check every 1/8 of the TTL (at
// most a second apart) ends them within that much of the deadline; a new
// TTL (SetRules) sets a new pace.
func (s *Server) reap() {
	defer close(s.reaper)
	t := time.NewTicker(s.reapEvery())
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.rulesChanged:
			t.Reset(s.reapEvery())
		case <-t.C:
			s.Expire(s.now())
		}
	}
}

// reapEvery is the reaper's pace for the grpc.connectionTTL in force.
func (s *Server) reapEvery() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return reapInterval(s.rules.ConnectionTTL)
}

func reapInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/8, 100*time.Millisecond), time.Second)
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
		last := "unknown"
		if at, ok := sess.ledger.LastActivity(); ok {
			last = at.Format(time.RFC3339)
		}
		s.log.Info("session expired", "session", id, "user", sess.user, "host", sess.host,
			"last_activity", last, "ttl", s.rules.ConnectionTTL)
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
	s.ended[sess.id] = ending{reason: reason, at: now, secret: sess.secret}
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

// identify returns the caller's identity: from its bearer token, or its
// TLS client certificate, or in development mode from what the client
// says.
func (s *Server) identify(ctx context.Context, claimed string) (Identity, error) {
	if s.authn == nil {
		return Identity{User: claimed}, nil
	}
	id, present, ok, err := s.lookup(ctx)
	if !present {
		s.log.Warn("call without credentials refused")
		return Identity{}, status.Error(codes.Unauthenticated, "the traffic manager requires a token: pass --token-file or set TETHER_TOKEN")
	}
	if !ok {
		if err != nil {
			s.log.Warn("call with refused credentials", "error", err)
			return Identity{}, status.Errorf(codes.Unauthenticated, "the traffic manager refused these credentials: %v", err)
		}
		s.log.Warn("call with an unknown token refused")
		return Identity{}, status.Error(codes.Unauthenticated, "the traffic manager does not know this token")
	}
	return id, nil
}

// lookup asks the Authenticator about the call's bearer token or, without
// one, its TLS client certificate (if the Authenticator judges those).
// present is false when the call carries neither.
func (s *Server) lookup(ctx context.Context) (id Identity, present, ok bool, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if tok := bearer(first(md, wire.MDAuthorization)); tok != "" {
		id, ok, err = s.authn.AuthenticateToken(ctx, tok)
		return id, true, ok, err
	}
	ca, can := s.authn.(CertAuthenticator)
	p, _ := peer.FromContext(ctx)
	if !can || p == nil {
		return Identity{}, false, false, nil
	}
	ti, _ := p.AuthInfo.(credentials.TLSInfo)
	if len(ti.State.PeerCertificates) == 0 {
		return Identity{}, false, false, nil
	}
	id, ok, err = ca.AuthenticateCert(ctx, ti.State.PeerCertificates)
	return id, true, ok, err
}

// Arrive implements pb.ManagerServer.
func (s *Server) Arrive(ctx context.Context, req *pb.ArriveRequest) (*pb.ArriveResponse, error) {
	if err := s.refuseAgent(ctx, "Arrive"); err != nil {
		return nil, err
	}
	if _, err := wire.Check(build.Side(wire.ManagerName, wire.UpgradeManager), buildinfo.FromProto(req.Build).Side(wire.DaemonName, wire.UpgradeDaemon)); err != nil {
		s.log.Warn("daemon refused: incompatible protocol", "user", req.User, "host", req.Host, "daemon_version", req.GetBuild().GetVersion(), "error", err)
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if req.Namespace != "" && !isDNSLabel(req.Namespace) {
		return nil, status.Errorf(codes.InvalidArgument, "namespace %q is not a Kubernetes namespace name (lower-case letters, digits and '-', at most 63)", req.Namespace)
	}
	subnets, _ := s.subnetStrings()
	resp := &pb.ArriveResponse{
		Subnets: subnets, ManagerVersion: build.Version, ManagerBuild: build.Proto(),
		DnsDomains: s.dnsDomains,
		DnsSearch:  s.searchDomains(req.Namespace),
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.resumeRefusedLocked(req); err != nil {
		return nil, err
	}
	resp.ConnectionTtlMs = s.rules.ConnectionTTL.Milliseconds()
	resp.InactiveBlockTimeoutMs = s.rules.InactiveBlockTimeout.Milliseconds()
	resp.ReportIntervalMs = s.rules.ReportInterval.Milliseconds()
	if req.ResumeSessionId != "" {
		if sess := s.sessions[req.ResumeSessionId]; sess != nil && sess.secretMatches(req.ResumeSessionSecret) {
			if err := s.sameUser(ctx, sess); err != nil {
				return nil, err
			}
			sess.ledger.Arrived(now, req.DaemonInstance, req.ByCli)
			sess.reportInterval = s.rules.ReportInterval
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
		ledger: newLedger(now, req), changed: make(chan struct{}, 1), dials: make(chan *pb.InboundDial, 64),
		flows: newFlowLimits(s.limits, s.log.With("session", id, "user", who.User)), reportInterval: s.rules.ReportInterval}
	sess.ctx, sess.cancel = context.WithCancel(s.ctx)
	s.sessions[id] = sess
	s.log.Info("session opened", "session", id, "user", who.User, "host", req.Host, "daemon", req.DaemonInstance)
	resp.SessionId, resp.SessionSecret, resp.User = id, secret, who.User
	return resp, nil
}

// resumeRefusedLocked refuses to resume, without a person, a session the
// manager ended: grpc.connectionTTL is final, and only a new `tether
// connect` (by_cli) opens a new session. The daemon takes NotFound as
// final, as from Report. Endings are remembered for one TTL; after that
// the daemon's own idle time (on its clock that counts suspend) keeps it
// from resuming.
func (s *Server) resumeRefusedLocked(req *pb.ArriveRequest) error {
	e, ok := s.ended[req.ResumeSessionId]
	if !ok || req.ByCli {
		return nil
	}
	h := sha256.Sum256([]byte(req.ResumeSessionSecret))
	if subtle.ConstantTimeCompare(h[:], e.secret[:]) != 1 {
		return nil // not its owner: a new session, as for any unknown id
	}
	s.log.Info("resume of an ended session refused", "session", req.ResumeSessionId, "reason", e.reason)
	return status.Error(codes.NotFound, e.reason)
}

// newLedger dates a new session's activity: a connect by a person is
// activity; a daemon re-arriving by itself at a restarted manager has an
// unknown last activity until its first report dates it, so a restart
// makes nobody active.
func newLedger(now time.Time, req *pb.ArriveRequest) *activity.Ledger {
	if req.ByCli {
		return activity.NewLedger(now, req.DaemonInstance)
	}
	return activity.NewUnknownLedger(now, req.DaemonInstance)
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
		r.IdleKnown = a.Events > 0 || a.IdleKnown
	}
	s.metrics.reports.Inc()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.ledger.Apply(now, r, sess.reportInterval) {
		s.log.Debug("activity", "session", sess.id, "user", sess.user, "idle_for", r.IdleFor)
	}
	// The view judges the session by the interval it reported at; from
	// this answer on it reports at the one in force.
	view := s.viewLocked(sess, now)
	sess.reportInterval = s.rules.ReportInterval
	return &pb.ReportResponse{Session: view, ReportIntervalMs: s.rules.ReportInterval.Milliseconds()}, nil
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
// A session whose activity is unknown holds no block right.
func (s *Server) idle(sess *session, now time.Time) (time.Duration, bool) {
	d, known := sess.ledger.Idle(now)
	return d, known && d <= s.rules.InactiveBlockTimeout
}

func (s *Server) viewLocked(sess *session, now time.Time) *pb.SessionView {
	l := sess.ledger
	idle, blocks := s.idle(sess, now)
	var blockLeft time.Duration
	if blocks {
		blockLeft = s.rules.InactiveBlockTimeout - idle
	}
	return &pb.SessionView{
		SessionId: sess.id, User: sess.user, Host: sess.host,
		State:            l.State(now, s.rules.InactiveBlockTimeout, sess.reportInterval).String(),
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
	for _, p := range *s.subnets.Load() {
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
	id, secret := first(md, wire.MDSession), first(md, wire.MDSecret)
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
	if err := s.sameUser(ctx, sess); err != nil {
		return nil, err
	}
	return sess, nil
}

// sameUser refuses a call on sess whose bearer token is not its user's:
// a session's id and secret are no credential on their own, so a leaked
// pair does not let another user act as its owner. Development mode has
// no tokens to compare.
func (s *Server) sameUser(ctx context.Context, sess *session) error {
	if s.authn == nil {
		return nil
	}
	who, err := s.identify(ctx, "")
	if err != nil {
		return err
	}
	if who.User != sess.user {
		s.log.Warn("session used with another user's token refused", "session", sess.id, "owner", sess.user, "token_user", who.User)
		return status.Errorf(codes.PermissionDenied, "session %s belongs to user %s; this token is %s", sess.id, sess.user, who.describe())
	}
	return nil
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

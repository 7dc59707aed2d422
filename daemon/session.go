package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/activity"
	"github.com/tether-dev/tether/internal/buildinfo"
	"github.com/tether-dev/tether/platform"
	pbm "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/vif"
	"github.com/tether-dev/tether/wire"
)

// Timeouts of the calls the daemon makes itself.
const (
	arriveTimeout = 10 * time.Second
	departTimeout = 2 * time.Second
)

// creds are a session's credentials; they change when the manager hands
// out a new session after a restart.
type creds struct {
	id, secret string
}

// session is one connection to a traffic manager with its VIF and routes.
type session struct {
	addr    string
	log     *slog.Logger
	cc      *grpc.ClientConn
	vif     *vif.VIF
	tunnels *tunnel.Client // the flows' streams to the manager
	router  platform.Router
	// subnets are the routed subnets; updateSubnets replaces them while
	// status reads them. refused are the advertised ones it left out, each
	// as why.
	subnets   atomic.Pointer[[]netip.Prefix]
	refused   atomic.Pointer[[]string]
	namespace string   // the session's Kubernetes namespace
	dnsSearch []string // search domains from Arrive
	// routesMu serialises updateSubnets: the watch stream and a
	// re-arrival both route what the manager advertises.
	routesMu       sync.Mutex
	floor          routeFloor // routes.minPrefixLength*
	allowConflicts bool
	instance       string
	user           string
	host           string
	creds          atomic.Pointer[creds]
	tracker        *activity.Tracker
	// reporter sends activity reports at the manager's
	// activity.reportInterval, which may change with any answer. Set
	// before the goroutines start.
	reporter *activity.Reporter
	metrics  *metrics
	// view is the manager's view from the last report.
	view     atomic.Pointer[pbm.SessionView]
	userName atomic.Pointer[string] // as the manager identified the user
	// managerBuild is the manager's build from the last Arrive (nil from a
	// manager older than build info).
	managerBuild atomic.Pointer[pbm.BuildInfo]
	// onEnded is called (in its own goroutine) when the manager has ended
	// the session.
	onEnded func(s *session, reason string)
	// saveCreds persists new credentials so a restarted daemon resumes.
	saveCreds func(manager string, c creds)
	// saveTargets persists the intercepts' targets; persistMu orders it.
	saveTargets func(id string, ts map[string]target)
	persistMu   sync.Mutex

	// ttl is grpc.connectionTTL (ns) from the last Arrive; saveActivity
	// records the last activity and it beside the cache, and savedAt
	// (the reporter's goroutine only) is the activity it saved last.
	ttl          atomic.Int64
	saveActivity func(activity.Snapshot, time.Duration)
	savedAt      time.Duration
	// The cluster DNS server on the VIF; dnsAddr is invalid when there is
	// none. dnsUndo reverts the host's DNS settings.
	dnsAddr netip.AddrPort
	dnsRes  *dnsResolver
	dnsUndo func() error
	dnsNote string

	icepts       intercepts
	inboundFlows atomic.Uint64
	// arriveMu serialises re-arrivals from the supervisor and the reporter.
	arriveMu sync.Mutex

	cancel context.CancelFunc
	done   sync.WaitGroup // the supervisor and the reporter

	closeOnce sync.Once
}

// sessionConfig is what a session needs to start.
type sessionConfig struct {
	manager    string
	allowConf  bool
	floor      routeFloor
	user, host string
	instance   string
	byCLI      bool                             // a person ran connect (activity), or the daemon resumes by itself
	resume     *creds                           // credentials of a session to resume, if any
	token      string                           // bearer token, for a manager with auth.tokenFile
	tls        credentials.TransportCredentials // nil: plaintext
	namespace  string                           // the session's Kubernetes namespace, for search domains
	tunName    string
	mtu        int
	dnsAddress string // dns.address; empty: defaultDNSAddress
	newRouter  func(dev string, log *slog.Logger) (platform.Router, error)
	tracker    *activity.Tracker
	metrics    *metrics
	onEnded    func(s *session, reason string)
	saveCreds  func(manager string, c creds)
	// targets are the intercepts' targets of the session to resume, from
	// the cache; saveTargets persists them after a change.
	targets     map[string]target
	saveTargets func(id string, ts map[string]target)
	// saveActivity records the last activity and the TTL (resume.go).
	saveActivity func(activity.Snapshot, time.Duration)
	log          *slog.Logger
}

// startSession connects to the manager, opens the session, and brings up
// the VIF and its routes. On failure it undoes what it did.
func startSession(ctx context.Context, cfg sessionConfig) (_ *session, err error) {
	s := &session{addr: cfg.manager, log: cfg.log.With("manager", cfg.manager), instance: cfg.instance, user: cfg.user, host: cfg.host,
		tracker: cfg.tracker, metrics: cfg.metrics, onEnded: cfg.onEnded, saveCreds: cfg.saveCreds, saveTargets: cfg.saveTargets, floor: cfg.floor, allowConflicts: cfg.allowConf,
		saveActivity: cfg.saveActivity, namespace: cfg.namespace}
	if cfg.resume != nil {
		s.creds.Store(cfg.resume)
	}
	defer func() {
		if err != nil {
			s.close(false)
		}
	}()
	opts := append(tunnel.DialOptions(cfg.tls), tunnel.WithBearer(cfg.token),
		grpc.WithUnaryInterceptor(s.unaryCreds),
		grpc.WithStreamInterceptor(s.streamCreds))
	s.cc, err = grpc.NewClient(cfg.manager, opts...)
	if err != nil {
		return nil, fmt.Errorf("traffic manager address %q: %w", cfg.manager, err)
	}
	resp, err := s.arrive(ctx, cfg.byCLI)
	if reason, ok := endedByManager(err); ok {
		return nil, &endedError{reason}
	}
	var incompatible *wire.IncompatibleError
	switch {
	case errors.As(err, &incompatible):
		s.close(true) // the manager opened a session this daemon cannot use
		return nil, err
	case status.Code(err) == codes.FailedPrecondition:
		return nil, fmt.Errorf("the traffic manager at %s refused: %s", cfg.manager, status.Convert(err).Message())
	case err != nil:
		code := status.Code(err)
		err = fmt.Errorf("cannot reach the traffic manager at %s: %s", cfg.manager, status.Convert(err).Message())
		if ctx.Err() == nil && (code == codes.Unavailable || code == codes.DeadlineExceeded) {
			err = unreachableError{err}
		}
		return nil, err
	}
	interval := time.Duration(resp.ReportIntervalMs) * time.Millisecond // activity.reportInterval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	subnets, err := s.checkedSubnets(resp.Subnets)
	if err != nil {
		return nil, err
	}
	s.subnets.Store(&subnets)
	s.dnsSearch = resp.DnsSearch
	s.setupDNS(cfg.dnsAddress, resp.DnsDomains)
	s.tunnels = tunnel.NewClient(s.cc, 0)
	s.vif, err = vif.New(vif.Config{Name: cfg.tunName, MTU: cfg.mtu, Open: s.opener(), Log: cfg.log})
	if err != nil {
		return nil, err
	}
	s.router, err = cfg.newRouter(s.vif.Name(), cfg.log)
	if err != nil {
		return nil, err
	}
	if err := s.router.Set(s.routed(subnets)); err != nil {
		return nil, fmt.Errorf("route %v through %s: %w", subnets, s.vif.Name(), err)
	}
	if s.dnsAddr.IsValid() {
		s.dnsUndo, s.dnsNote, err = platform.ConfigureDNS(s.vif.Name(), s.dnsAddr.Addr(), s.dnsRes.domains, resp.DnsSearch, cfg.log)
		if err != nil {
			return nil, fmt.Errorf("configure DNS: %w", err)
		}
	}
	var sctx context.Context
	sctx, s.cancel = context.WithCancel(context.Background())
	s.icepts.targets = make(map[string]target)
	s.restoreTargets(cfg.targets, resp.Resumed)
	s.reporter = activity.NewReporter(s.tracker, interval, s.report)
	s.done.Add(3)
	go func() { defer s.done.Done(); s.supervise(sctx) }()
	go func() { defer s.done.Done(); s.watch(sctx) }()
	go func() { defer s.done.Done(); s.reporter.Run(sctx) }()
	s.log.Info("connected", "session", resp.SessionId, "subnets", subnets, "device", s.vif.Name())
	return s, nil
}

func (s *session) arrive(ctx context.Context, byCLI bool) (*pbm.ArriveResponse, error) {
	req := &pbm.ArriveRequest{User: s.user, Host: s.host, DaemonInstance: s.instance, Version: build.Version, ByCli: byCLI, Build: build.Proto(), Namespace: s.namespace}
	if c := s.creds.Load(); c != nil {
		req.ResumeSessionId, req.ResumeSessionSecret = c.id, c.secret
	}
	ctx, cancel := context.WithTimeout(ctx, arriveTimeout)
	defer cancel()
	resp, err := pbm.NewManagerClient(s.cc).Arrive(ctx, req)
	if err != nil {
		return nil, err
	}
	c := creds{id: resp.SessionId, secret: resp.SessionSecret}
	s.creds.Store(&c)
	s.ttl.Store(int64(time.Duration(resp.ConnectionTtlMs) * time.Millisecond))
	s.userName.Store(&resp.User)
	s.managerBuild.Store(resp.ManagerBuild)
	// After storing the credentials, so that the caller can depart.
	if _, err := wire.Check(build.Side(wire.DaemonName, wire.UpgradeDaemon), buildinfo.FromProto(resp.ManagerBuild).Side(wire.ManagerName, wire.UpgradeManager)); err != nil {
		return nil, err
	}
	if s.saveCreds != nil {
		s.saveCreds(s.addr, c)
	}
	return resp, nil
}

// report sends one activity report and acts on the answer.
func (s *session) report(ctx context.Context, snap activity.Snapshot) {
	req := &pbm.ReportRequest{DaemonInstance: s.instance, Activity: &pbm.Activity{Events: snap.Events, IdleForMs: snap.IdleFor.Milliseconds(), IdleKnown: snap.Known}}
	if snap.Known && snap.At != s.savedAt && s.saveActivity != nil {
		s.saveActivity(snap, time.Duration(s.ttl.Load()))
		s.savedAt = snap.At
	}
	ctx, cancel := context.WithTimeout(ctx, arriveTimeout)
	defer cancel()
	resp, err := pbm.NewManagerClient(s.cc).Report(ctx, req)
	if reason, ok := endedByManager(err); ok {
		// The manager ended the session (TTL): end it here, like quit.
		s.log.Warn("the traffic manager ended the session", "reason", reason)
		go s.onEnded(s, reason)
		return
	}
	switch status.Code(err) {
	case codes.OK:
		s.view.Store(resp.Session)
		// The manager's rules changed while it runs (its configmap).
		s.reporter.SetInterval(time.Duration(resp.ReportIntervalMs) * time.Millisecond)
	case codes.Unauthenticated:
		// A restarted manager that does not know us.
		s.rearrive(ctx)
	default:
		if ctx.Err() == nil {
			s.log.Debug("report failed", "error", err)
		}
	}
}

// supervise re-arrives whenever the link comes back after a failure. It
// waits on state changes only: an idle, healthy link wakes it never.
func (s *session) supervise(ctx context.Context) {
	wasDown := false
	for {
		st := s.cc.GetState()
		switch st {
		case connectivity.Ready:
			if wasDown {
				s.rearrive(ctx)
				wasDown = false
			}
		case connectivity.TransientFailure:
			if !wasDown {
				s.log.Warn("lost the traffic manager; reconnecting with backoff")
			}
			wasDown = true
		case connectivity.Idle:
			s.cc.Connect()
		}
		if !s.cc.WaitForStateChange(ctx, st) {
			return
		}
	}
}

func (s *session) rearrive(ctx context.Context) {
	s.arriveMu.Lock()
	defer s.arriveMu.Unlock()
	if reason := s.beyondTTL(); reason != "" {
		s.log.Warn("not resuming: inactive for longer than the TTL", "reason", reason)
		go s.onEnded(s, reason)
		return
	}
	old := s.creds.Load()
	resp, err := s.arrive(ctx, false)
	if reason, ok := endedByManager(err); ok {
		s.log.Warn("the traffic manager ended the session", "reason", reason)
		go s.onEnded(s, reason)
		return
	}
	var incompatible *wire.IncompatibleError
	if errors.As(err, &incompatible) {
		// The manager was replaced by one this daemon cannot work with:
		// the routes stay as the user accepted them, and status says why
		// nothing gets through.
		s.log.Error("the traffic manager after reconnecting is incompatible", "error", err)
		s.notice(fmt.Sprintf("the traffic manager after reconnecting: %v", err))
		return
	}
	if err != nil {
		// The link dropped again; the next Ready retries.
		s.log.Warn("re-arrive failed", "error", err)
		return
	}
	s.reporter.SetInterval(time.Duration(resp.ReportIntervalMs) * time.Millisecond)
	if resp.Resumed {
		s.log.Info("link back; session resumed", "session", resp.SessionId)
	} else {
		s.log.Info("link back; the manager opened a new session", "session", resp.SessionId, "old", old.id)
	}
	s.updateSubnets(resp.Subnets)
}

// routes are the routed subnets.
func (s *session) routes() []netip.Prefix {
	if p := s.subnets.Load(); p != nil {
		return *p
	}
	return nil
}

// notice adds a message of the daemon's own to those status shows, once:
// a manager that keeps dropping the link and coming back with the same
// refused routes does not grow the list.
func (s *session) notice(msg string) {
	ic := &s.icepts
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if !slices.Contains(ic.notices, msg) {
		ic.notices = append(ic.notices, msg)
	}
}

// checkedSubnets parses the subnets the manager advertised and applies
// every rule a set must pass before it is routed, at connect and after a
// reconnect alike.
func (s *session) checkedSubnets(advertised []string) ([]netip.Prefix, error) {
	subnets, err := parseSubnets(advertised)
	if err != nil {
		return nil, err
	}
	if err := checkRoutes(subnets, s.floor); err != nil {
		return nil, err
	}
	if err := checkManagerOutside(s.addr, subnets); err != nil {
		return nil, err
	}
	if !s.allowConflicts {
		if err := platform.CheckConflicts(subnets, ""); err != nil {
			return nil, fmt.Errorf("%w (pass --allow-conflicting-subnets to route them anyway)", err)
		}
	}
	return subnets, nil
}

// unreachableError is a connect that failed because the manager could not
// be reached (no network, manager down): worth trying again, unlike a
// refusal.
type unreachableError struct{ error }

func (e unreachableError) Unwrap() error { return e.error }

// beyondTTL says why the session must not be resumed silently when the
// daemon's own idle time, on its clock that counts suspend, exceeds the
// TTL: the manager has ended it or would, and may have forgotten (it
// remembers endings for one TTL, and nothing after a restart).
func (s *session) beyondTTL() string {
	snap, ttl := s.tracker.Snapshot(), time.Duration(s.ttl.Load())
	if !snap.Known || ttl <= 0 || snap.IdleFor <= ttl {
		return ""
	}
	return ttlEnded(ttl, snap.IdleFor)
}

// opener adapts the tunnel client to the VIF.
func (s *session) opener() vif.Opener {
	return func(ctx context.Context, id vif.FlowID) (vif.Remote, error) {
		// Counted here, as the daemon asks the manager to dial: once per
		// flow, whether the destination accepts or not.
		proto, kind := pbm.Protocol_TCP, activity.TCPTunnel
		if id.Proto == vif.UDP {
			proto, kind = pbm.Protocol_UDP, activity.UDPFlow
		}
		s.metrics.flow(kind, s.tracker.NoteFlow(kind, id.Dst))
		if id.Proto == vif.UDP && s.dnsAddr.IsValid() && id.Dst == s.dnsAddr {
			return newDNSFlow(ctx, s.dnsRes), nil
		}
		return s.tunnels.Open(ctx, proto, id.Src, id.Dst)
	}
}

// withCreds adds the session's id and secret, once it has them, to a call.
func (s *session) withCreds(ctx context.Context) context.Context {
	if c := s.creds.Load(); c != nil {
		ctx = metadata.AppendToOutgoingContext(ctx, wire.MDSession, c.id, wire.MDSecret, c.secret)
	}
	return ctx
}

func (s *session) unaryCreds(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(s.withCreds(ctx), method, req, reply, cc, opts...)
}

func (s *session) streamCreds(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(s.withCreds(ctx), desc, cc, method, opts...)
}

// close ends the session: with depart, it tells the manager first. Routes
// go before the device so no packet is routed into a closing stack.
func (s *session) close(depart bool) error {
	var errs []error
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
			s.done.Wait()
		}
		if depart && s.cc != nil && s.creds.Load() != nil {
			ctx, cancel := context.WithTimeout(context.Background(), departTimeout)
			if _, err := pbm.NewManagerClient(s.cc).Depart(ctx, &pbm.DepartRequest{}); err != nil {
				s.log.Warn("depart failed; the manager will expire the session", "error", err)
			}
			cancel()
		}
		if s.dnsUndo != nil {
			errs = append(errs, s.dnsUndo())
		}
		if s.router != nil {
			errs = append(errs, s.router.Close())
		}
		if s.vif != nil {
			errs = append(errs, s.vif.Close())
		}
		if s.tunnels != nil {
			s.tunnels.Close()
		}
		if s.cc != nil {
			errs = append(errs, s.cc.Close())
		}
	})
	return errors.Join(errs...)
}

// setupDNS chooses the DNS server's address for the manager's domains.
func (s *session) setupDNS(configured string, domains []string) {
	if len(domains) == 0 {
		return
	}
	s.dnsRes = &dnsResolver{domains: domains, resolve: func(ctx context.Context, name string, family uint32) (*pbm.ResolveResponse, error) {
		return pbm.NewManagerClient(s.cc).Resolve(ctx, &pbm.ResolveRequest{Name: name, Family: family})
	}}
	if a, err := netip.ParseAddr(configured); err == nil {
		s.dnsAddr = netip.AddrPortFrom(a, 53)
		return
	}
	if configured != "" {
		s.log.Warn("dns.address is not an IP address; using the default", "dns.address", configured)
	}
	s.dnsAddr, _ = defaultDNSAddress(s.routes())
}

// routed is what goes into the VIF: the subnets, and the DNS address when
// it lies outside them.
func (s *session) routed(subnets []netip.Prefix) []netip.Prefix {
	if !s.dnsAddr.IsValid() {
		return subnets
	}
	for _, p := range subnets {
		if p.Contains(s.dnsAddr.Addr()) {
			return subnets
		}
	}
	return append(slices.Clip(subnets), netip.PrefixFrom(s.dnsAddr.Addr(), s.dnsAddr.Addr().BitLen()))
}

func parseSubnets(ss []string) ([]netip.Prefix, error) {
	if len(ss) == 0 {
		return nil, errors.New("the traffic manager advertised no subnets")
	}
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("the traffic manager advertised a bad subnet %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// checkManagerOutside refuses subnets that contain the manager itself:
// routing them into the VIF would send the tunnel into itself.
func checkManagerOutside(addr string, subnets []netip.Prefix) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil // a name; resolved by gRPC
	}
	for _, p := range subnets {
		if p.Contains(ip.Unmap()) {
			return fmt.Errorf("the traffic manager %s is inside the subnet %s it asks to route", ip, p)
		}
	}
	return nil
}

func equalPrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

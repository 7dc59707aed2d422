package daemon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/activity"
	"github.com/tether-dev/tether/internal/buildinfo"
	"github.com/tether-dev/tether/internal/clock"
	"github.com/tether-dev/tether/platform"
	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/wire"
)

// DefaultSocketGroup is the group that may use the control socket besides
// root, when it exists (socket.group).
const DefaultSocketGroup = "tether"

// Config configures the daemon.
type Config struct {
	Socket string // DefaultSocket (per platform) when empty
	// SocketGroup (socket.group) may use the socket besides root; empty or
	// a group that does not exist: root only. Who of them may do what:
	// access.go.
	SocketGroup string
	TUNName     string // "%d" is replaced by the kernel
	MTU         int
	Log         *slog.Logger
	// NewRouter makes the OS routes; platform.NewRouter when nil.
	NewRouter func(dev string, log *slog.Logger) (platform.Router, error)
	// DNSAddress (dns.address) is where the daemon answers cluster DNS; the
	// last address of the first IPv4 subnet when empty.
	DNSAddress string
	// IgnoreTCPPorts (activity.ignoreTCPPorts): tunnels to these ports are
	// not activity; activity.DefaultIgnoreTCPPorts when nil.
	IgnoreTCPPorts []uint16
	// MinPrefixLength (routes.minPrefixLength) and MinPrefixLengthIPv6
	// (routes.minPrefixLengthIPv6) are the widest subnets the daemon
	// routes; DefaultMinPrefixLength* when 0.
	MinPrefixLength, MinPrefixLengthIPv6 int
	// Ready, when set, is called once by Run when the control socket
	// serves; Stopping when Run begins to shut down. They tell the service
	// manager (platform.Notifier).
	Ready, Stopping func()

	// resumeDelay is the wait after the nth failed resume (from 0);
	// tunnel.ReconnectDelay when nil. Tests shorten it.
	resumeDelay func(n int) time.Duration
}

// build is this daemon's build, reported to the manager and the CLI.
var build = buildinfo.Read()

// noteCLI counts every control call as activity unless the CLI said
// --no-activity.
func (d *Daemon) noteCLI(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(wire.MDNoActivity)) == 0 {
		d.tracker.NoteCLI(strings.ToLower(path.Base(info.FullMethod)))
		d.metrics.activity[activity.CLI].Inc()
	}
	return handler(ctx, req)
}

// Daemon serves the control API and owns the session.
type Daemon struct {
	pb.UnimplementedDaemonServer
	cfg      Config
	log      *slog.Logger
	instance string
	ln       net.Listener
	srv      *grpc.Server
	tracker  *activity.Tracker
	metrics  *metrics
	bg       sync.WaitGroup     // the goroutine resuming a saved session
	owner    owner              // who may use the session (access.go)
	stop     context.CancelFunc // ends Run (Shutdown); set before serving

	// connMu serialises connects, the CLI's and the resume loop's. It is
	// held across the slow part of a connect, so nothing else takes it
	// but Run at the end: control calls never wait for a connect.
	connMu sync.Mutex
	// cacheMu serialises changes to the session cache file.
	cacheMu sync.Mutex
	// activityMu serialises writes of the activity record (resume.go).
	activityMu sync.Mutex

	// mu guards the fields below; it is never held across a call to the
	// manager but by Quit's depart.
	mu      sync.Mutex
	sess    *session
	reason  string
	pending *attempt // the connect in progress, if any
	resume  *resuming
	stopped bool // Run is shutting down: no new session may start
}

// attempt is a connect in progress.
type attempt struct {
	manager string
	cancel  context.CancelFunc
	quit    bool // the user quit while it connected
}

// resuming is the state of a restarted daemon retrying its cached session
// until it is up or the user quits (status "resuming").
type resuming struct {
	manager  string
	attempts int
	next     time.Time // of the next attempt; zero while one runs
	cancel   context.CancelFunc
}

// New recovers from a daemon that died without cleaning up, then listens on
// the control socket.
func New(cfg Config) (*Daemon, error) {
	if cfg.Socket == "" {
		cfg.Socket = DefaultSocket
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.NewRouter == nil {
		cfg.NewRouter = platform.NewRouter
	}
	d := &Daemon{cfg: cfg, log: cfg.Log.With("component", "daemon"), instance: rand.Text()[:12],
		tracker: activity.NewTracker(clock.Boot, cfg.IgnoreTCPPorts), metrics: newMetrics()}
	d.removeStale()
	ln, err := listenSocket(cfg.Socket, cfg.SocketGroup, d.log)
	if err != nil {
		return nil, err
	}
	d.ln = ln
	// authorize first: a refused call is not activity.
	d.srv = grpc.NewServer(grpc.Creds(peerCreds{}), grpc.ChainUnaryInterceptor(d.authorize, d.noteCLI), grpc.StreamInterceptor(d.authorizeStream))
	pb.RegisterDaemonServer(d.srv, d)
	return d, nil
}

// Run serves until ctx ends, then ends the session (routes and TUN
// removed) and removes the socket.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, d.stop = context.WithCancel(ctx)
	defer d.stop()
	d.log.Info("daemon started", "socket", d.cfg.Socket, "pid", os.Getpid())
	errc := make(chan error, 1)
	go func() { errc <- d.srv.Serve(d.ln) }()
	// The socket listens since New: a client that connects now waits in the
	// backlog until Serve accepts it.
	if d.cfg.Ready != nil {
		d.cfg.Ready()
	}
	if c, ok := d.loadCreds(); ok {
		// A restarted daemon resumes its session by itself: not activity.
		rctx, cancel := context.WithCancel(ctx)
		r := &resuming{manager: c.Manager, cancel: cancel}
		d.mu.Lock()
		d.resume = r
		d.mu.Unlock()
		d.bg.Add(1)
		go func() {
			defer d.bg.Done()
			defer cancel()
			d.resumeLoop(rctx, r)
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	if d.cfg.Stopping != nil {
		d.cfg.Stopping()
	}
	d.mu.Lock()
	d.stopped = true
	if d.pending != nil {
		d.pending.cancel()
	}
	if d.resume != nil {
		d.resume.cancel()
	}
	d.mu.Unlock()
	d.bg.Wait()
	// A connect still running sees stopped and undoes what it did.
	d.connMu.Lock()
	defer d.connMu.Unlock()
	d.mu.Lock()
	if d.sess != nil {
		// The session outlives the daemon: a restarted daemon resumes it,
		// knowing when it was last used.
		err = errors.Join(err, d.sess.close(false))
		d.saveActivity(d.tracker.Snapshot(), time.Duration(d.sess.ttl.Load()))
		d.sess = nil
		d.clearState()
	}
	d.mu.Unlock()
	d.srv.Stop()
	os.Remove(d.cfg.Socket)
	d.log.Info("daemon stopped")
	return err
}

// floor is the configured route floor.
func (d *Daemon) floor() routeFloor {
	f := routeFloor{v4: d.cfg.MinPrefixLength, v6: d.cfg.MinPrefixLengthIPv6}
	if f.v4 == 0 {
		f.v4 = DefaultMinPrefixLength
	}
	if f.v6 == 0 {
		f.v6 = DefaultMinPrefixLengthIPv6
	}
	return f
}

// resumeLoop resumes the cached session with r's manager, retrying with
// backoff for as long as the manager cannot be reached: a laptop that
// starts without network resumes once it has one. It ends when the session
// is up, the manager refuses it, or ctx ends (quit, shutdown). r is what
// status shows while it runs, unless Quit took it away.
func (d *Daemon) resumeLoop(ctx context.Context, r *resuming) {
	delay := d.cfg.resumeDelay
	if delay == nil {
		delay = tunnel.ReconnectDelay
	}
	defer func() {
		d.mu.Lock()
		if d.resume == r {
			d.resume = nil
		}
		d.mu.Unlock()
	}()
	for n := 0; ; n++ {
		_, err := d.connect(ctx, &pb.ConnectRequest{Manager: r.manager}, false)
		if err == nil || ctx.Err() != nil || d.current() != nil {
			return // resumed, stopped, or the user connected meanwhile
		}
		if !errors.As(err, new(unreachableError)) {
			d.log.Warn("resuming the previous session failed; `tether connect` starts a new one", "error", err)
			return
		}
		wait := delay(n)
		d.mu.Lock()
		r.attempts, r.next = n+1, time.Now().Add(wait)
		d.mu.Unlock()
		// Once at Warn: a laptop may stay offline for days.
		log := d.log.Debug
		if n == 0 {
			log = d.log.Warn
		}
		log("resuming the previous session failed; retrying until the traffic manager answers or `tether quit`", "error", err, "attempt", n+1, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		d.mu.Lock()
		r.next = time.Time{}
		d.mu.Unlock()
	}
}

// Connect implements pb.DaemonServer.
func (d *Daemon) Connect(ctx context.Context, req *pb.ConnectRequest) (*pb.StatusResponse, error) {
	if req.Manager == "" {
		return nil, status.Error(codes.InvalidArgument, "no traffic manager address (--manager host:port)")
	}
	resp, err := d.connect(ctx, req, true)
	if _, ok := status.FromError(err); !ok {
		err = status.Error(codes.Unavailable, err.Error())
	}
	return resp, err
}

// connect starts a session, or returns the one up. Only connMu is held
// while the session starts: Status, Quit and the rest answer meanwhile.
// Quit cancels it; the session, should it start all the same, is undone.
func (d *Daemon) connect(ctx context.Context, req *pb.ConnectRequest, byCLI bool) (*pb.StatusResponse, error) {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if resp, err, done := d.connected(ctx, req.Manager, byCLI); done {
		return resp, err
	}
	att := &attempt{manager: req.Manager, cancel: cancel}
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "the daemon is stopping")
	}
	d.pending = att
	d.mu.Unlock()
	sess, err := d.startSession(ctx, req, byCLI)

	d.owner.mu.Lock()
	defer d.owner.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = nil
	if att.quit || d.stopped {
		why := "the daemon is stopping"
		if att.quit {
			why = "`tether quit` ran while it connected"
		}
		if sess != nil {
			if cerr := sess.close(att.quit); cerr != nil {
				d.log.Warn("cleanup of a cancelled connect", "error", cerr)
			}
		}
		if att.quit {
			d.clearCreds()
		}
		return nil, status.Errorf(codes.Canceled, "connect to %s cancelled: %s", req.Manager, why)
	}
	if err != nil {
		d.reason = err.Error()
		return nil, err
	}
	d.sess, d.reason = sess, ""
	d.saveState(sess.vif.Name())
	// Recorded at once: a daemon killed before its first report still
	// knows when it was last used.
	d.saveActivity(d.tracker.Snapshot(), time.Duration(sess.ttl.Load()))
	// Installing the session and giving it its owner are one step under
	// owner.mu: no call ever sees the session without its owner.
	if byCLI {
		d.claimLocked(ctx, sess)
	} else {
		d.restoreOwnerLocked(sess)
	}
	return d.statusLocked(), nil
}

// connected handles a connect when a session is up already: the same
// manager's answers with its status (if the caller may see it, claiming it
// if it has no owner), another's is refused. done is false when there is
// no session.
func (d *Daemon) connected(ctx context.Context, manager string, byCLI bool) (_ *pb.StatusResponse, _ error, done bool) {
	d.owner.mu.Lock()
	defer d.owner.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess == nil {
		return nil, nil, false
	}
	// authorize checked before a connect that ran meanwhile made this
	// session; check again.
	if caller, known := callerUID(ctx); known {
		if err := d.owner.checkLocked(d.sess, caller); err != nil {
			return nil, err, true
		}
	}
	if d.sess.addr == manager {
		if byCLI {
			d.claimLocked(ctx, d.sess)
		}
		return d.statusLocked(), nil, true
	}
	return nil, status.Errorf(codes.FailedPrecondition, "already connected to %s: run `tether quit` first", d.sess.addr), true
}

// startSession starts a session as req asks, resuming the cached one when
// it is with the same manager.
func (d *Daemon) startSession(ctx context.Context, req *pb.ConnectRequest, byCLI bool) (*session, error) {
	host := req.Host
	if host == "" {
		host = hostname()
	}
	user := req.User
	var resume *creds
	var targets map[string]target
	if c, ok := d.loadCreds(); ok && c.Manager == req.Manager {
		resume, targets = &creds{id: c.ID, secret: c.Secret}, fromCached(c.Intercepts)
		if !byCLI {
			if why := d.restoreActivity(); why != "" {
				// Final: the cache goes, and only a new connect starts
				// a session.
				d.log.Warn("not resuming the cached session", "reason", why)
				d.clearCreds()
				return nil, errors.New(why)
			}
			// A daemon resuming by itself reuses what connect was given.
			user, req.Token, req.Tls, req.CaPem, req.Namespace = c.User, c.Token, c.TLS, c.CAPEM, c.Namespace
		}
	} else if !byCLI {
		// Forgotten meanwhile (quit): nothing to resume, and without the
		// cache the daemon would connect without the user's token.
		return nil, status.Error(codes.Canceled, "no cached session to resume")
	}
	tlsCreds, err := transportCreds(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	sess, err := startSession(ctx, sessionConfig{
		manager: req.Manager, allowConf: req.AllowConflictingSubnets, floor: d.floor(), namespace: req.Namespace,
		user: user, host: host, instance: d.instance, byCLI: byCLI, resume: resume, token: req.Token, tls: tlsCreds,
		tunName: d.cfg.TUNName, mtu: d.cfg.MTU, dnsAddress: d.cfg.DNSAddress, newRouter: d.cfg.NewRouter, log: d.cfg.Log,
		tracker: d.tracker, metrics: d.metrics, onEnded: d.sessionEnded, saveActivity: d.saveActivity,
		targets: targets, saveTargets: d.saveTargets,
		saveCreds: func(mgr string, c creds) {
			// All a restarted daemon needs to resume as connect asked:
			// without the token and TLS settings it would resume in
			// plaintext, unauthenticated.
			d.saveCreds(cachedCreds{Manager: mgr, ID: c.id, Secret: c.secret, User: user,
				Token: req.Token, TLS: req.Tls, CAPEM: req.CaPem, Namespace: req.Namespace})
		},
	})
	var ended *endedError
	if errors.As(err, &ended) {
		// Final: the cache goes, and only a new connect starts a session.
		d.log.Warn("the traffic manager ended the session", "reason", ended.reason)
		d.clearCreds()
		return nil, ended
	}
	return sess, err
}

// Status implements pb.DaemonServer.
func (d *Daemon) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.statusLocked(), nil
}

// Quit implements pb.DaemonServer. A connect or resume in progress is
// cancelled; it undoes what it did by itself, so Quit does not wait for it.
func (d *Daemon) Quit(context.Context, *pb.QuitRequest) (*pb.StatusResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pending != nil {
		d.pending.quit = true
		d.pending.cancel()
		d.reason = "quit by the user"
	}
	if d.resume != nil {
		d.resume.cancel()
		d.resume = nil
		d.clearCreds()
		d.reason = "quit by the user"
	}
	if d.sess != nil {
		if err := d.endSessionLocked("quit by the user", true); err != nil {
			d.log.Warn("cleanup after quit", "error", err)
		}
	}
	return d.statusLocked(), nil
}

// Shutdown implements pb.DaemonServer: Run returns as on SIGTERM, routes
// and TUN removed, then the socket.
func (d *Daemon) Shutdown(context.Context, *pb.ShutdownRequest) (*pb.ShutdownResponse, error) {
	d.log.Info("shutdown requested on the control socket")
	d.stop()
	return &pb.ShutdownResponse{}, nil
}

// endSessionLocked ends the session, telling the manager when depart: routes
// and TUN go, and status says why.
func (d *Daemon) endSessionLocked(reason string, depart bool) error {
	err := d.sess.close(depart)
	d.sess, d.reason = nil, reason
	d.clearState()
	d.clearCreds()
	d.log.Info("session ended", "reason", reason)
	return err
}

// sessionEnded ends s, which the manager has ended already: routes and TUN
// go as on quit, and status says why.
func (d *Daemon) sessionEnded(s *session, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess != s {
		return
	}
	if err := d.endSessionLocked(reason, false); err != nil {
		d.log.Warn("cleanup after the session ended", "error", err)
	}
}

// Sessions implements pb.DaemonServer.
func (d *Daemon) Sessions(ctx context.Context, req *pbm.SessionsRequest) (*pbm.SessionsResponse, error) {
	s, err := d.sessionOrErr()
	if err != nil {
		return nil, err
	}
	return pbm.NewManagerClient(s.cc).Sessions(ctx, req)
}

func (d *Daemon) statusLocked() *pb.StatusResponse {
	s := d.sess
	if s == nil {
		resp := &pb.StatusResponse{Reason: d.reason}
		switch {
		case d.resume != nil:
			r := d.resume
			resp.Manager, resp.Link, resp.Resuming, resp.ResumeAttempts = r.manager, "resuming", true, uint32(r.attempts)
			if !r.next.IsZero() {
				resp.NextResumeSeconds = max(0, time.Until(r.next).Seconds())
			}
		case d.pending != nil:
			resp.Manager, resp.Link = d.pending.manager, "connecting"
		}
		resp.DaemonBuild = build.Proto()
		return resp
	}
	st := s.vif.Stats()
	snap := d.tracker.Snapshot()
	act := &pb.Activity{LastSecondsAgo: -1}
	if snap.Known {
		act.LastSecondsAgo, act.LastReason = snap.IdleFor.Seconds(), snap.Reason
	}
	resp := &pb.StatusResponse{
		Activity:    act,
		ManagerView: s.view.Load(),
		Connected:   true,
		Manager:     s.addr,
		Device:      s.vif.Name(),
		Link:        linkState(s.cc.GetState().String()),
		Offloads:    s.vif.Offloads(),
		Counters: &pb.Counters{
			TcpTunnels: st.TCPFlows, TcpTunnelsLive: st.TCPLive, TcpRefused: st.TCPFailed,
			UdpFlows: st.UDPFlows, UdpFlowsLive: st.UDPLive, BytesOut: st.BytesOut, BytesIn: st.BytesIn,
			ActivityEvents: snap.Events, InboundFlows: s.inboundFlows.Load(),
		},
	}
	resp.DaemonBuild, resp.ManagerBuild = build.Proto(), s.managerBuild.Load()
	resp.Intercepts, resp.Notices = s.interceptStatus()
	if s.dnsAddr.IsValid() {
		resp.Dns, resp.DnsDomains, resp.DnsConfig = s.dnsAddr.String(), s.dnsRes.domains, s.dnsNote
	}
	if u := s.userName.Load(); u != nil {
		resp.User = *u
	}
	if c := s.creds.Load(); c != nil {
		resp.SessionId = c.id
	}
	for _, p := range s.routes() {
		resp.Subnets = append(resp.Subnets, p.String())
	}
	resp.RefusedSubnets, resp.Namespace, resp.DnsSearch = s.refusedSubnets(), s.namespace, s.dnsSearch
	return resp
}

func linkState(grpcState string) string {
	if grpcState == "READY" || grpcState == "IDLE" {
		return "ready"
	}
	return "reconnecting"
}

// The state file records the device of the live session, so that a daemon
// started after a SIGKILL can remove what the dead one left behind.
type state struct {
	Device string `json:"device"`
	PID    int    `json:"pid"`
}

func (d *Daemon) statePath() string { return d.cfg.Socket + ".state" }

func (d *Daemon) saveState(dev string) {
	b, _ := json.Marshal(state{Device: dev, PID: os.Getpid()})
	if err := os.WriteFile(d.statePath(), b, 0o600); err != nil {
		d.log.Warn("cannot record state; a crash would leave the device for the kernel to remove", "error", err)
	}
}

func (d *Daemon) clearState() { os.Remove(d.statePath()) }

func (d *Daemon) removeStale() {
	b, err := os.ReadFile(d.statePath())
	if err != nil {
		return
	}
	var st state
	if json.Unmarshal(b, &st) == nil && st.Device != "" {
		if removed, err := platform.CleanStaleDNS(st.Device); err != nil {
			d.log.Warn("removing DNS settings a previous daemon left failed", "error", err)
		} else if len(removed) > 0 {
			d.log.Info("removed DNS settings a previous daemon left", "files", removed)
		}
		removed, err := platform.RemoveStale(st.Device)
		switch {
		case err != nil:
			d.log.Warn("removing a stale device failed", "device", st.Device, "error", err)
		case removed:
			d.log.Info("removed the device a previous daemon left", "device", st.Device, "pid", st.PID)
		}
	}
	d.clearState()
}

// The session cache lets a restarted daemon resume its session: the
// manager keeps a session for its TTL whatever happens to the transport.
// It holds the session secret, so only root may read it.
type cachedCreds struct {
	Manager string `json:"manager"`
	ID      string `json:"session_id"`
	Secret  string `json:"session_secret"`
	User    string `json:"user"`
	Token   string `json:"token,omitempty"`
	TLS     bool   `json:"tls,omitempty"`
	CAPEM   []byte `json:"ca_pem,omitempty"`
	// The session's namespace (connect --namespace), for its search
	// domains after a restart.
	Namespace string `json:"namespace,omitempty"`

	// Where the session's intercepts' flows go (portcache.go).
	Intercepts map[string]cachedTarget `json:"intercepts,omitempty"`
}

// transportCreds returns TLS credentials when the request asks for TLS,
// verified against its CA or the system roots; nil means plaintext.
func transportCreds(req *pb.ConnectRequest) (credentials.TransportCredentials, error) {
	if !req.Tls && len(req.CaPem) == 0 {
		return nil, nil
	}
	var pem []byte
	if len(req.CaPem) > 0 {
		pem = req.CaPem
	}
	creds, err := tunnel.ClientTLS(pem)
	if errors.Is(err, tunnel.ErrNoPEM) {
		return nil, errors.New("the CA file holds no PEM certificate")
	}
	return creds, err
}

func (d *Daemon) credsPath() string { return d.cfg.Socket + ".session" }

// saveCreds caches c, keeping the intercepts' targets while the session
// is the same.
func (d *Daemon) saveCreds(c cachedCreds) {
	d.cacheMu.Lock()
	defer d.cacheMu.Unlock()
	if old, ok := d.loadCreds(); ok && old.ID == c.ID && old.Manager == c.Manager {
		c.Intercepts = old.Intercepts
	}
	d.writeCacheLocked(c)
}

func (d *Daemon) loadCreds() (cachedCreds, bool) {
	var c cachedCreds
	b, err := os.ReadFile(d.credsPath())
	if err != nil || json.Unmarshal(b, &c) != nil || c.ID == "" || c.Manager == "" {
		return c, false
	}
	return c, true
}

// clearCreds forgets the session: its cache, its owner and its activity
// record.
func (d *Daemon) clearCreds() {
	d.cacheMu.Lock()
	defer d.cacheMu.Unlock()
	os.Remove(d.credsPath())
	os.Remove(d.ownerPath())
	os.Remove(d.activityPath())
}

// listenSocket listens on path unless another daemon answers there. The
// socket is mode 0660, its group is group when that exists (root's
// otherwise, with a warning).
func listenSocket(path, group string, log *slog.Logger) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("a daemon already listens on %s", path)
	}
	os.Remove(path) // a socket left by a dead daemon
	ln, err := listenUnix(path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	if group == "" {
		return ln, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		log.Warn("the socket group does not exist: only root can use the control socket; create the group and add the users of tether to it",
			"group", group, "socket", path, "error", err)
		return ln, nil
	}
	gid, err := strconv.Atoi(g.Gid)
	if err == nil {
		err = os.Chown(path, -1, gid)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("give %s to the group %s: %w", path, group, err)
	}
	return ln, nil
}

// Dial connects the CLI to the daemon at socket.
func Dial(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tether-dev/tether/internal/goroutines"
	"github.com/tether-dev/tether/manager/conflict"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
)

// Defaults of Config.
const (
	DefaultOpenTimeout = 5 * time.Second
	DefaultPeekTimeout = 500 * time.Millisecond
)

// Config is what an agent needs; Manager, Workload, Port and App are
// required.
type Config struct {
	// Manager is the traffic manager's gRPC address, host:port.
	Manager string
	// Creds secures the link to the manager; nil means plaintext.
	Creds credentials.TransportCredentials
	// Token, when set, goes with every call as "authorization: Bearer TOKEN".
	Token string
	// TokenFile, when set, holds the token instead, read again for every
	// call (a pod's projected token is rotated by the kubelet).
	TokenFile string
	// Workload is the workload beside which the agent runs, "namespace/name".
	Workload string
	// Port is the workload's port, the one intercepts name.
	Port uint16
	// App is the app's address, host:port (usually 127.0.0.1:APPPORT).
	App string
	// Listen is where clients connect; default ":Port".
	Listen string
	// OpenTimeout bounds each flow open and each dial of the app; 0 means
	// DefaultOpenTimeout.
	OpenTimeout time.Duration
	// PeekTimeout bounds the wait for a client's first bytes when they
	// decide between HTTP and not; 0 means DefaultPeekTimeout.
	PeekTimeout time.Duration
	// Log receives the agent's logs; nil means slog.Default().
	Log *slog.Logger
}

// Agent forwards one port of a workload. See the package comment.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	errLog *log.Logger // net/http's errors, at debug level
	start  time.Time   // origin of the agent's monotonic clock (now)

	ln      *net.TCPListener
	cc      *grpc.ClientConn
	mgr     pb.ManagerClient
	tunnels *tunnel.Client

	app    *target
	routes atomic.Pointer[routes] // nil until the first table: everything to the app

	// life is alive until Run ends (or Close): flows and connections
	// derive from it, not from the request that started them.
	life context.Context
	stop context.CancelFunc
	// tasks owns every goroutine Run starts and every running handler.
	tasks goroutines.Group

	// mu guards running and closed: Run runs at most once, never after
	// Close.
	mu      sync.Mutex
	running bool
	closed  bool
	ran     chan struct{} // closed when Run returns

	releaseOnce sync.Once
	releaseErr  error
}

// New checks cfg, listens and prepares the manager's client (which connects
// on first use).
func New(cfg Config) (*Agent, error) {
	if cfg.Manager == "" {
		return nil, errors.New("agent: no manager address (--manager HOST:PORT)")
	}
	if err := conflict.CheckWorkload(cfg.Workload); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.Port == 0 {
		return nil, errors.New("agent: no workload port (--port)")
	}
	if _, _, err := net.SplitHostPort(cfg.App); err != nil {
		return nil, fmt.Errorf("agent: app address %q is not host:port (e.g. 127.0.0.1:8080): %w", cfg.App, err)
	}
	if cfg.Listen == "" {
		cfg.Listen = ":" + strconv.Itoa(int(cfg.Port))
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = DefaultOpenTimeout
	}
	if cfg.PeekTimeout <= 0 {
		cfg.PeekTimeout = DefaultPeekTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	lg := cfg.Log.With("component", "agent")
	a := &Agent{
		cfg: cfg, log: lg, start: time.Now(), ran: make(chan struct{}),
		errLog: slog.NewLogLogger(lg.Handler(), slog.LevelDebug),
	}
	auth := tunnel.WithBearer(cfg.Token)
	if cfg.TokenFile != "" {
		auth = tunnel.WithBearerFile(cfg.TokenFile)
	}
	cc, err := grpc.NewClient(cfg.Manager, append(tunnel.DialOptions(cfg.Creds), auth)...)
	if err != nil {
		return nil, fmt.Errorf("agent: manager %s: %w", cfg.Manager, err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		cc.Close()
		return nil, fmt.Errorf("agent: listen: %w", err)
	}
	a.cc, a.mgr, a.ln = cc, pb.NewManagerClient(cc), ln.(*net.TCPListener)
	a.tunnels = tunnel.NewClient(cc, cfg.OpenTimeout)
	a.life, a.stop = context.WithCancel(context.Background())
	a.app = a.newAppTarget()
	return a, nil
}

// Addr is the address the agent listens on.
func (a *Agent) Addr() net.Addr { return a.ln.Addr() }

// Run serves until ctx ends or Close is called; then it closes the
// listener, ends every connection and flow, waits for its goroutines and
// releases what New opened. It returns nil after a normal stop.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running || a.closed {
		a.mu.Unlock()
		return errors.New("agent: Run called twice or after Close")
	}
	a.running = true
	a.mu.Unlock()
	defer close(a.ran)
	defer a.release()

	stopOnCtx := context.AfterFunc(ctx, a.stop)
	defer stopOnCtx()
	a.log.Info("agent started", "listen", a.ln.Addr().String(), "app", a.cfg.App, "workload", a.cfg.Workload,
		"port", a.cfg.Port, "manager", a.cfg.Manager)

	queue := newConnQueue(a.ln.Addr())
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge
	srv := &http.Server{
		Handler:     a,
		Protocols:   protocols,
		IdleTimeout: idleTimeout,
		ErrorLog:    a.errLog,
		BaseContext: func(net.Listener) context.Context { return a.life },
	}
	a.tasks.Go(func() { srv.Serve(queue) })
	a.tasks.Go(func() { a.watch(a.life) })
	context.AfterFunc(a.life, func() { a.ln.Close() })

	err := a.accept(queue)

	a.stop()
	srv.Close()
	a.tasks.Close()
	a.tasks.Wait()
	a.app.rt.closeIdle()
	for _, t := range a.routes.Load().all() {
		t.rt.closeIdle()
	}
	a.log.Info("agent stopped")
	return err
}

// accept serves the listener until it closes.
func (a *Agent) accept(queue *connQueue) error {
	var delay time.Duration
	for {
		c, err := a.ln.AcceptTCP()
		if err != nil {
			if a.life.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("agent: accept: %w", err)
			}
			// Out of file descriptors and the like: wait, like net/http.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			a.log.Warn("accept failed", "error", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !a.tasks.Go(func() { a.serveConn(c, queue) }) {
			c.Close()
			return nil
		}
	}
}

// serveConn routes one client connection (see the package comment).
func (a *Agent) serveConn(c *net.TCPConn, queue *connQueue) {
	client := c.RemoteAddr().String()
	stopClose := context.AfterFunc(a.life, func() { c.Close() })
	defer stopClose()
	rt := a.routes.Load()
	if t := rt.lookupWhole(); t != nil {
		if t.down(a.now()) {
			a.log.Debug("route connection", "client", client, "to", "app", "why", t.String()+" unavailable")
		} else if f, err := a.open(t.id, client); err != nil {
			a.bench(t, err)
			a.log.Debug("route connection", "client", client, "to", "app", "why", t.String()+" did not open")
		} else {
			a.log.Debug("route connection", "client", client, "to", t.String(), "why", "whole traffic")
			if err := tunnel.Splice(c, f); err != nil && a.life.Err() == nil {
				a.log.Debug("connection reset", "client", client, "to", t.String(), "error", err)
			}
			return
		}
	}
	var prefix []byte
	if len(rt.httpTargets()) > 0 {
		var ok bool
		if prefix, ok = peek(c, a.cfg.PeekTimeout); ok {
			if !stopClose() {
				return // stopping: c is closed
			}
			queue.push(&prefixConn{c: c, prefix: prefix})
			return
		}
		a.log.Debug("route connection", "client", client, "to", "app", "why", "not HTTP")
	} else {
		a.log.Debug("route connection", "client", client, "to", "app", "why", "no intercepts")
	}
	a.toApp(c, prefix)
}

// toApp splices c with a new connection to the app, first sending it what
// was peeked.
func (a *Agent) toApp(c *net.TCPConn, prefix []byte) {
	d := net.Dialer{Timeout: a.cfg.OpenTimeout}
	nc, err := d.DialContext(a.life, "tcp", a.cfg.App)
	if err != nil {
		if a.life.Err() == nil {
			a.log.Warn("cannot reach the app: connection reset", "app", a.cfg.App, "client", c.RemoteAddr().String(), "error", err)
		}
		c.SetLinger(0)
		c.Close()
		return
	}
	app := nc.(*net.TCPConn)
	stop := context.AfterFunc(a.life, func() { app.Close() })
	defer stop()
	if len(prefix) > 0 {
		if _, err := app.Write(prefix); err != nil {
			app.SetLinger(0)
			c.SetLinger(0)
			app.Close()
			c.Close()
			return
		}
	}
	if err := tunnel.Splice(c, app); err != nil && a.life.Err() == nil {
		a.log.Debug("connection reset", "client", c.RemoteAddr().String(), "to", "app", "error", err)
	}
}

func (rt *routes) lookupWhole() *target {
	if rt == nil {
		return nil
	}
	return rt.whole
}

func (rt *routes) httpTargets() []*target {
	if rt == nil {
		return nil
	}
	return rt.http
}

// Close stops the agent and releases what New opened; after Run it waits
// for Run to end. It is idempotent.
func (a *Agent) Close() error {
	a.mu.Lock()
	a.closed = true
	running := a.running
	a.mu.Unlock()
	a.stop()
	if running {
		<-a.ran
	}
	return a.release()
}

// release closes the listener and the manager's connection, once.
func (a *Agent) release() error {
	a.releaseOnce.Do(func() {
		var errs []error
		if err := a.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close listener: %w", err))
		}
		if err := a.cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close manager connection: %w", err))
		}
		a.releaseErr = errors.Join(errs...)
	})
	return a.releaseErr
}

// now is the agent's monotonic clock.
func (a *Agent) now() time.Duration { return time.Since(a.start) }

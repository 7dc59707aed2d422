package manager

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

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
	Log            *slog.Logger
}

// Server implements the Manager gRPC service.
type Server struct {
	pb.UnimplementedManagerServer
	subnets []netip.Prefix
	tunnels *tunnel.Server
	log     *slog.Logger

	// ctx is alive until Shutdown; every session's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards sessions.
	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	id       string
	secret   [sha256.Size]byte // SHA-256 of the secret: the secret itself is never kept
	user     string
	host     string
	instance string
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
	log := cfg.Log.With("component", "manager")
	s := &Server{
		subnets:  cfg.Subnets,
		tunnels:  tunnel.NewServer(cfg.DialTimeout, cfg.UDPIdleTimeout, cfg.Log),
		log:      log,
		sessions: make(map[string]*session),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Register registers the service on g.
func (s *Server) Register(g *grpc.Server) { pb.RegisterManagerServer(g, s) }

// Shutdown ends every session's flows and waits for their goroutines. The
// caller stops the grpc.Server afterwards.
func (s *Server) Shutdown() {
	s.cancel()
	s.tunnels.Wait()
}

// Arrive implements pb.ManagerServer.
func (s *Server) Arrive(_ context.Context, req *pb.ArriveRequest) (*pb.ArriveResponse, error) {
	subnets := make([]string, len(s.subnets))
	for i, p := range s.subnets {
		subnets[i] = p.String()
	}
	resp := &pb.ArriveResponse{Subnets: subnets, ManagerVersion: Version}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.ResumeSessionId != "" {
		if sess := s.sessions[req.ResumeSessionId]; sess != nil && sess.secretMatches(req.ResumeSessionSecret) {
			sess.instance = req.DaemonInstance
			resp.SessionId, resp.SessionSecret, resp.Resumed = sess.id, req.ResumeSessionSecret, true
			s.log.Info("session resumed", "session", sess.id, "user", sess.user, "host", sess.host)
			return resp, nil
		}
	}
	id, secret := rand.Text()[:16], rand.Text()
	sess := &session{id: id, secret: sha256.Sum256([]byte(secret)), user: req.User, host: req.Host, instance: req.DaemonInstance}
	sess.ctx, sess.cancel = context.WithCancel(s.ctx)
	s.sessions[id] = sess
	s.log.Info("session opened", "session", id, "user", req.User, "host", req.Host, "daemon", req.DaemonInstance)
	resp.SessionId, resp.SessionSecret = id, secret
	return resp, nil
}

// Depart implements pb.ManagerServer.
func (s *Server) Depart(ctx context.Context, _ *pb.DepartRequest) (*pb.DepartResponse, error) {
	sess, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	delete(s.sessions, sess.id)
	s.mu.Unlock()
	sess.cancel()
	s.log.Info("session departed", "session", sess.id, "user", sess.user)
	return &pb.DepartResponse{}, nil
}

// Tunnel implements pb.ManagerServer.
func (s *Server) Tunnel(stream grpc.BidiStreamingServer[pb.Frame, pb.Frame]) error {
	sess, err := s.authenticate(stream.Context())
	if err != nil {
		return err
	}
	return s.tunnels.Serve(sess.ctx, stream, s.allowed)
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
	md, _ := metadata.FromIncomingContext(ctx)
	id, secret := first(md, MDSession), first(md, MDSecret)
	if id == "" || secret == "" {
		s.log.Warn("call without session credentials refused")
		return nil, status.Error(codes.Unauthenticated, "no session: call Arrive first")
	}
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
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

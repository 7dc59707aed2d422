package manager

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits bound what one user or session may hold, so that a greedy or
// broken client gets a clear error and everyone else keeps working. Each
// is a limits.* key; a zero field takes DefaultLimits'.
type Limits struct {
	// SessionsPerUser (limits.sessionsPerUser): sessions one identity may
	// hold at once; resuming one of them is not a new one.
	SessionsPerUser int
	// TCPFlowsPerSession (limits.tcpFlowsPerSession): live TCP flows of a
	// session; the daemon resets the connections over it.
	TCPFlowsPerSession int
	// UDPFlowsPerSession (limits.udpFlowsPerSession): UDP flows of a
	// session; a new one ends the least recently used, so the newest
	// always gets through.
	UDPFlowsPerSession int
	// InterceptsPerSession (limits.interceptsPerSession).
	InterceptsPerSession int
	// NoticesPerSession (limits.noticesPerSession): notices kept for an
	// owner who is not watching; the newest are kept.
	NoticesPerSession int
}

// DefaultLimits are far above what a developer uses: 8 sessions is a
// laptop, a desktop and a few VMs; 4,096 TCP flows is several browsers
// and IDEs at once; 1,024 UDP flows is a minute of DNS lookups from a busy
// machine (each lookup from a new port is a flow until it idles out).
var DefaultLimits = Limits{SessionsPerUser: 8, TCPFlowsPerSession: 4096, UDPFlowsPerSession: 1024, InterceptsPerSession: 64, NoticesPerSession: 32}

func (l Limits) withDefaults() (Limits, error) {
	for _, f := range []struct {
		v   *int
		def int
	}{{&l.SessionsPerUser, DefaultLimits.SessionsPerUser}, {&l.TCPFlowsPerSession, DefaultLimits.TCPFlowsPerSession},
		{&l.UDPFlowsPerSession, DefaultLimits.UDPFlowsPerSession}, {&l.InterceptsPerSession, DefaultLimits.InterceptsPerSession},
		{&l.NoticesPerSession, DefaultLimits.NoticesPerSession}} {
		if *f.v == 0 {
			*f.v = f.def
		}
		if *f.v < 0 {
			return l, fmt.Errorf("manager: negative limit in %+v", l)
		}
	}
	return l, nil
}

// sessionLimitLocked refuses a new session for user once it holds
// limits.sessionsPerUser.
func (s *Server) sessionLimitLocked(user string) error {
	n := 0
	for _, sess := range s.sessions {
		if sess.user == user {
			n++
		}
	}
	if n < s.limits.SessionsPerUser {
		return nil
	}
	s.log.Warn("session refused: limit reached", "user", user, "sessions", n, "limits.sessionsPerUser", s.limits.SessionsPerUser)
	return status.Errorf(codes.ResourceExhausted,
		"%s already has %d sessions, the traffic manager's limit (limits.sessionsPerUser): end one with `tether quit` on its machine; an inactive one ends by itself after %s (grpc.connectionTTL)",
		user, n, s.rules.ConnectionTTL)
}

// interceptLimitLocked refuses a new intercept of sess once it holds
// limits.interceptsPerSession.
func (s *Server) interceptLimitLocked(sess *session) error {
	n := 0
	for _, x := range s.intercepts {
		if x.owner == sess {
			n++
		}
	}
	if n < s.limits.InterceptsPerSession {
		return nil
	}
	return status.Errorf(codes.ResourceExhausted,
		"this session has %d intercepts, the traffic manager's limit (limits.interceptsPerSession): leave one with `tether leave NAME`", n)
}

// noticeLocked queues msg for sess's owner, keeping the newest
// limits.noticesPerSession: an owner who never watches cannot grow the
// manager's memory, and one who does learns that some were dropped.
func (s *Server) noticeLocked(sess *session, msg string) {
	sess.notices = append(sess.notices, msg)
	if over := len(sess.notices) - s.limits.NoticesPerSession; over > 0 {
		sess.notices = append(sess.notices[:0], sess.notices[over:]...)
		sess.notices[0] = fmt.Sprintf("(older notices dropped: limits.noticesPerSession is %d) %s", s.limits.NoticesPerSession, sess.notices[0])
	}
}

// idleStreams is how many Tunnel streams a session may hold beyond one
// per flow its limits allow: those waiting for their next flow (a daemon
// keeps up to 16) and those ending.
const idleStreams = 64

// flowLimits is one session's tunnel.Limiter, shared by all of its Tunnel
// streams: limits.tcpFlowsPerSession and limits.udpFlowsPerSession, and
// streams up to both plus idleStreams.
type flowLimits struct {
	log *slog.Logger
	// tick orders UDP use: a logical clock, so the least recently used
	// flow is found without reading the time per datagram.
	tick atomic.Uint64

	mu                  sync.Mutex // guards what follows
	maxTCP, maxUDP      int        // change with SetRules
	streams, tcp        int
	udp                 map[*udpUse]struct{}
	warnedTCP           bool // the first refusal is a warning, the rest debug
	warnedUDP           bool
	evicted, tcpRefused uint64
}

type udpUse struct {
	last atomic.Uint64 // tick of its last datagram
	end  func()
}

func newFlowLimits(l Limits, log *slog.Logger) *flowLimits {
	return &flowLimits{maxTCP: l.TCPFlowsPerSession, maxUDP: l.UDPFlowsPerSession, log: log, udp: make(map[*udpUse]struct{})}
}

// AdmitStream implements tunnel.Limiter.
func (f *flowLimits) AdmitStream() (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.streams >= f.maxTCP+f.maxUDP+idleStreams {
		f.log.Debug("tunnel stream refused: limit reached", "streams", f.streams)
		return fmt.Sprintf("this session has %d tunnel streams open, more than its flows may use (limits.tcpFlowsPerSession + limits.udpFlowsPerSession + %d waiting)", f.streams, idleStreams), false
	}
	f.streams++
	return "", true
}

// setLimits applies new flow limits (SetRules): live flows stay, new ones
// count against the new limits.
func (f *flowLimits) setLimits(l Limits) {
	f.mu.Lock()
	f.maxTCP, f.maxUDP = l.TCPFlowsPerSession, l.UDPFlowsPerSession
	f.mu.Unlock()
}

// StreamDone implements tunnel.Limiter.
func (f *flowLimits) StreamDone() {
	f.mu.Lock()
	f.streams--
	f.mu.Unlock()
}

// AdmitTCP implements tunnel.Limiter.
func (f *flowLimits) AdmitTCP() (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tcp < f.maxTCP {
		f.tcp++
		return "", true
	}
	f.tcpRefused++
	level := slog.LevelDebug
	if !f.warnedTCP {
		f.warnedTCP, level = true, slog.LevelWarn
	}
	f.log.Log(context.Background(), level, "TCP flow refused: limit reached", "limits.tcpFlowsPerSession", f.maxTCP, "refused", f.tcpRefused)
	return fmt.Sprintf("this session has %d live TCP flows, the traffic manager's limit (limits.tcpFlowsPerSession): close some connections", f.tcp), false
}

// TCPDone implements tunnel.Limiter.
func (f *flowLimits) TCPDone() {
	f.mu.Lock()
	f.tcp--
	f.mu.Unlock()
}

// UDP implements tunnel.Limiter.
func (f *flowLimits) UDP(end func()) (touch, done func()) {
	u := &udpUse{end: end}
	u.last.Store(f.tick.Add(1))
	f.mu.Lock()
	var victim *udpUse
	if len(f.udp) >= f.maxUDP {
		for v := range f.udp {
			if victim == nil || v.last.Load() < victim.last.Load() {
				victim = v
			}
		}
		delete(f.udp, victim)
		f.evicted++
		level := slog.LevelDebug
		if !f.warnedUDP {
			f.warnedUDP, level = true, slog.LevelWarn
		}
		f.log.Log(context.Background(), level, "UDP flow ended for a newer one: limit reached", "limits.udpFlowsPerSession", f.maxUDP, "evicted", f.evicted)
	}
	f.udp[u] = struct{}{}
	f.mu.Unlock()
	if victim != nil {
		victim.end()
	}
	return func() { u.last.Store(f.tick.Add(1)) }, func() {
		f.mu.Lock()
		delete(f.udp, u)
		f.mu.Unlock()
	}
}

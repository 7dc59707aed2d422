package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/tether-dev/tether/wire"
)

// Tuning of the gRPC transport that carries flows. Both ends use the same
// values so that neither caps the other.
const (
	// MaxBackoff bounds the reconnect delay to a lost manager; delays start
	// at baseBackoff and grow by backoffFactor, each with ±backoffJitter.
	MaxBackoff    = 5 * time.Second
	baseBackoff   = 200 * time.Millisecond
	backoffFactor = 1.6
	backoffJitter = 0.2
	// keepaliveTime detects a vanished manager (and keeps NAT state) without
	// waking an idle daemon more than once per this period;
	// keepaliveMinTime is the manager's limit, below it (a client pinging
	// more often gets GOAWAY "too_many_pings").
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
	keepaliveMinTime = 10 * time.Second
	// Flow-control windows. A stream's window bounds what one flow buffers
	// (its backpressure); the connection's bounds all flows together.
	// Memory is used only as data arrives.
	streamWindow = 4 << 20
	connWindow   = 64 << 20
	// Buffers of the HTTP/2 transport: larger ones cut syscalls per byte
	// on bulk flows.
	transportBuffer = 512 << 10
)

// ErrNoPEM is ClientTLS's answer to a CA bundle without a certificate.
var ErrNoPEM = errors.New("holds no PEM certificate")

// ClientTLS returns TLS credentials for a link to a manager, verified
// against caPEM, or against the system roots when caPEM is nil.
func ClientTLS(caPEM []byte) (credentials.TransportCredentials, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, ErrNoPEM
		}
		cfg.RootCAs = pool
	}
	return credentials.NewTLS(cfg), nil
}

// WithBearer sends token on every call over the link, nothing when it is
// empty. Plaintext links may carry it: TLS is the operator's choice.
func WithBearer(token string) grpc.DialOption {
	if token == "" {
		return grpc.EmptyDialOption{}
	}
	return grpc.WithPerRPCCredentials(bearer(token))
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{wire.MDAuthorization: "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// WithBearerFile sends the token in file on every call over the link, read
// again for each call: the kubelet rotates a pod's projected
// service-account token in place, and a token read once would expire
// (after an hour) under a long-running agent. A call fails when the file
// cannot be read or is empty.
func WithBearerFile(file string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(bearerFile(file))
}

type bearerFile string

func (f bearerFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("token file %s is empty", string(f))
	}
	return map[string]string{wire.MDAuthorization: "Bearer " + tok}, nil
}

func (bearerFile) RequireTransportSecurity() bool { return false }

// ReconnectDelay is the delay before attempt n+1 to reopen a stream from the
// manager, the same curve as the link's own reconnects: 200 ms growing by
// 1.6, at most MaxBackoff, each with ±20 % jitter.
func ReconnectDelay(n int) time.Duration {
	d := float64(baseBackoff)
	for range n {
		d *= backoffFactor
		if d >= float64(MaxBackoff) {
			break
		}
	}
	d *= 1 - backoffJitter + 2*backoffJitter*rand.Float64()
	return min(time.Duration(d), MaxBackoff)
}

// DialOptions are the daemon's options for the link to a manager; creds nil
// means plaintext.
func DialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: baseBackoff, Multiplier: backoffFactor, Jitter: backoffJitter, MaxDelay: MaxBackoff},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
		grpc.WithReadBufferSize(transportBuffer),
		grpc.WithWriteBufferSize(transportBuffer),
	}
}

// Keepalive is how the manager finds clients that vanished without closing
// their connection (a laptop that lost its network, a frozen NAT): a
// connection it has read nothing from for Time gets a ping, and one that
// does not answer within Timeout is closed, which ends its streams. gRPC's
// default would wait two hours, while a dead watch stream competes for
// dials and notices.
type Keepalive struct {
	Time    time.Duration // grpc.keepaliveTime
	Timeout time.Duration // grpc.keepaliveTimeout
}

// DefaultKeepalive ends a dead client's streams within 50 s. A live daemon
// or agent pings every 30 s itself, so the manager's pings are rare.
var DefaultKeepalive = Keepalive{Time: 30 * time.Second, Timeout: 20 * time.Second}

// MinKeepaliveTime is the shortest Time gRPC honours on a server.
const MinKeepaliveTime = time.Second

// ServerOptions are the manager's options: ka (zero fields: the defaults),
// and a keepalive policy that allows the pings of DialOptions.
func ServerOptions(ka Keepalive) []grpc.ServerOption {
	if ka.Time == 0 {
		ka.Time = DefaultKeepalive.Time
	}
	if ka.Timeout == 0 {
		ka.Timeout = DefaultKeepalive.Timeout
	}
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: ka.Time, Timeout: ka.Timeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		grpc.ReadBufferSize(transportBuffer),
		grpc.WriteBufferSize(transportBuffer),
	}
}

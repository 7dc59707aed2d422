package manager

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
)

// grpcManager is a manager behind a real gRPC server on loopback, with one
// client connection: calls go through the codec and the transport as a
// daemon's do.
type grpcManager struct {
	s      *Server
	cc     *grpc.ClientConn
	client pb.ManagerClient
}

// startGRPC serves a manager for cfg; empty Subnets mean 127.0.0.0/8, so
// flows reach loopback servers of the test.
func startGRPC(t testing.TB, cfg Config) *grpcManager {
	t.Helper()
	if len(cfg.Subnets) == 0 {
		cfg.Subnets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Shutdown()
		t.Fatal(err)
	}
	srv := grpc.NewServer(tunnel.ServerOptions(tunnel.Keepalive{})...)
	s.Register(srv)
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), tunnel.DialOptions(nil)...)
	if err != nil {
		s.Shutdown()
		srv.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		s.Shutdown()
		srv.Stop()
		<-served
	})
	return &grpcManager{s: s, cc: cc, client: pb.NewManagerClient(cc)}
}

// arrive opens a session for user; the context carries its credentials.
func (m *grpcManager) arrive(t testing.TB, user string) context.Context {
	t.Helper()
	resp, err := m.client.Arrive(context.Background(), &pb.ArriveRequest{User: user, Host: user + "-laptop", DaemonInstance: "d-" + user})
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(context.Background(), MDSession, resp.SessionId, MDSecret, resp.SessionSecret)
}

package labtest

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tether-dev/tether/manager"
	pb "github.com/tether-dev/tether/rpc/manager"
)

// Manager serves a traffic manager of cfg on loopback for the test, with
// a lab subnet when cfg has none, and returns its client.
func Manager(t testing.TB, cfg manager.Config) pb.ManagerClient {
	t.Helper()
	if len(cfg.Subnets) == 0 {
		cfg.Subnets = []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m, err := manager.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	m.Register(srv)
	go func() { _ = srv.Serve(ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); m.Shutdown(); srv.Stop() })
	return pb.NewManagerClient(cc)
}

package tunnel_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/wire"
)

// TestBearerFileReadPerCall: a token file is read for every call, unary
// and stream, so a token the kubelet rotated in place is sent from the
// next call on; a call while the file is missing fails, and the next one
// after it is back works.
func TestBearerFileReadPerCall(t *testing.T) {
	var mu sync.Mutex
	var seen []string // authorization of each call, in order
	record := func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		seen = append(seen, strings.Join(md.Get(wire.MDAuthorization), ","))
		mu.Unlock()
		return status.Error(codes.Unimplemented, "recorded")
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, _ any, _ *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
			return nil, record(ctx)
		}),
		grpc.StreamInterceptor(func(_ any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, _ grpc.StreamHandler) error {
			return record(ss.Context())
		}))
	pb.RegisterManagerServer(srv, pb.UnimplementedManagerServer{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()

	file := filepath.Join(t.TempDir(), "token")
	write := func(tok string) {
		// As the kubelet does: a new file renamed over the old one.
		tmp := file + ".new"
		if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write("first")
	cc, err := grpc.NewClient(ln.Addr().String(), append(tunnel.DialOptions(nil), tunnel.WithBearerFile(file))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := pb.NewManagerClient(cc)
	unary := func() error {
		_, err := c.Sessions(context.Background(), &pb.SessionsRequest{})
		return err
	}
	streamCall := func() error {
		s, err := c.WatchAgent(context.Background(), &pb.WatchAgentRequest{})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	if err := unary(); status.Code(err) != codes.Unimplemented {
		t.Fatalf("first call: %v", err)
	}
	write("second")
	if err := unary(); status.Code(err) != codes.Unimplemented {
		t.Fatalf("call after the rotation: %v", err)
	}
	if err := streamCall(); status.Code(err) != codes.Unimplemented {
		t.Fatalf("stream after the rotation: %v", err)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := unary(); err == nil || !strings.Contains(err.Error(), "token file") {
		t.Fatalf("call without the file = %v, want an error naming the token file", err)
	}
	write("third")
	if err := unary(); status.Code(err) != codes.Unimplemented {
		t.Fatalf("call after the file is back: %v", err)
	}
	want := []string{"Bearer first", "Bearer second", "Bearer second", "Bearer third"}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, " | ") != strings.Join(want, " | ") {
		t.Fatalf("the server saw %q, want %q", seen, want)
	}
}

package grpcproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testManager is the upstream: it echoes what it was sent and the
// authorization it saw, sets headers and trailers, and fails on request.
type testManager struct {
	testpb.UnimplementedTestServiceServer
}

func (testManager) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if err := grpc.SetHeader(ctx, metadata.Pairs("x-header", "h-"+first(md, "x-test"))); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t-"+first(md, "x-test"))); err != nil {
		return nil, err
	}
	if req.ResponseStatus != nil {
		return nil, status.Error(codes.Code(req.ResponseStatus.Code), req.ResponseStatus.Message)
	}
	return &testpb.SimpleResponse{Username: strings.Join(md.Get("authorization"), ","), Payload: req.Payload}, nil
}

func (testManager) FullDuplexCall(st testpb.TestService_FullDuplexCallServer) error {
	md, _ := metadata.FromIncomingContext(st.Context())
	if err := st.SendHeader(metadata.Pairs("x-header", "stream-"+first(md, "x-test"))); err != nil {
		return err
	}
	n := 0
	for {
		req, err := st.Recv()
		if errors.Is(err, io.EOF) {
			st.SetTrailer(metadata.Pairs("x-count", fmt.Sprint(n)))
			return nil
		}
		if err != nil {
			return err
		}
		n++
		if err := st.Send(&testpb.StreamingOutputCallResponse{Payload: req.Payload}); err != nil {
			return err
		}
	}
}

func first(md metadata.MD, k string) string {
	if v := md.Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

// bearer is the identity the upstream ClientConn adds to every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// rig is a test manager on TCP loopback, the proxy on a Unix socket with
// an upstream that adds a bearer token, and a client of the proxy.
type rig struct {
	mgrAddr string
	mgr     *grpc.Server
	proxy   *Proxy
	client  *grpc.ClientConn
}

func startManager(t *testing.T, addr string) (*grpc.Server, string) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port of a stopped manager may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, testManager{})
	go func() { _ = srv.Serve(ln) }()
	return srv, ln.Addr().String()
}

func newRig(t *testing.T, opts ...grpc.ServerOption) *rig {
	t.Helper()
	r := &rig{}
	r.mgr, r.mgrAddr = startManager(t, "127.0.0.1:0")
	up, err := grpc.NewClient(r.mgrAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer("users-token")),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	r.proxy = New(up, []string{"authorization"}, slog.New(slog.DiscardHandler), opts...)
	served := make(chan error, 1)
	go func() { served <- r.proxy.Serve(ln) }()
	r.client, err = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second}),
		// As often as gRPC lets a client ping: the daemon pings every 30s.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.client.Close()
		r.proxy.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		up.Close()
		r.mgr.Stop()
	})
	return r
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Headers, trailers, errors and the caller's metadata pass both ways; the
// manager sees the upstream's bearer token, never the caller's.
func TestUnary(t *testing.T) {
	r := newRig(t)
	c := testpb.NewTestServiceClient(r.client)
	for _, tc := range []struct {
		name    string
		req     *testpb.SimpleRequest
		code    codes.Code
		message string
	}{
		{name: "ok", req: &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello")}}},
		{name: "empty message", req: &testpb.SimpleRequest{}},
		{name: "error status", req: &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.PermissionDenied), Message: "missing get on configmaps"}},
			code: codes.PermissionDenied, message: "missing get on configmaps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, "x-test", tc.name, "authorization", "Bearer forged")
			var hdr, trl metadata.MD
			resp, err := c.UnaryCall(ctx, tc.req, grpc.Header(&hdr), grpc.Trailer(&trl))
			if s := status.Convert(err); s.Code() != tc.code || s.Message() != tc.message {
				t.Fatalf("status %v, want %v %q", err, tc.code, tc.message)
			}
			if got := first(hdr, "x-header"); got != "h-"+tc.name {
				t.Errorf("header x-header = %q, want %q", got, "h-"+tc.name)
			}
			if got := first(trl, "x-trailer"); got != "t-"+tc.name {
				t.Errorf("trailer x-trailer = %q, want %q", got, "t-"+tc.name)
			}
			if err != nil {
				return
			}
			if resp.Username != "Bearer users-token" {
				t.Errorf("the manager saw authorization %q, want only the upstream's token", resp.Username)
			}
			if string(resp.GetPayload().GetBody()) != string(tc.req.GetPayload().GetBody()) {
				t.Errorf("payload %q, want %q", resp.GetPayload().GetBody(), tc.req.GetPayload().GetBody())
			}
		})
	}
}

// A bidirectional stream carries messages both ways in order, half-close
// reaches the manager, and its trailer comes back.
func TestBidiStream(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := testpb.NewTestServiceClient(r.client).FullDuplexCall(metadata.AppendToOutgoingContext(ctx, "x-test", "bidi"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	big := strings.Repeat("x", 64<<10) // several frames per message
	go func() {
		for i := range n {
			if err := st.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(fmt.Sprint(i, big))}}); err != nil {
				return
			}
		}
		_ = st.CloseSend()
	}()
	hdr, err := st.Header()
	if err != nil || first(hdr, "x-header") != "stream-bidi" {
		t.Fatalf("header %v %v, want x-header stream-bidi", hdr, err)
	}
	for i := range n {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := fmt.Sprint(i, big); string(resp.Payload.Body) != want {
			t.Fatalf("message %d: %d bytes, want %d", i, len(resp.Payload.Body), len(want))
		}
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last message: %v, want EOF", err)
	}
	if got := first(st.Trailer(), "x-count"); got != fmt.Sprint(n) {
		t.Fatalf("trailer x-count = %q, want %d", got, n)
	}
}

// A caller that cancels ends the manager's side of the stream.
func TestCancelReachesManager(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := testpb.NewTestServiceClient(r.client).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&testpb.StreamingOutputCallRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := st.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("after cancel: %v, want Canceled", err)
	}
	// goleak (TestMain) finds a handler goroutine the cancel did not end.
}

// When the manager goes away the proxy closes its clients' connections, so
// they leave Ready as with a direct link; once it is back they are Ready
// again and calls work.
func TestUpstreamBreakReachesClients(t *testing.T) {
	r := newRig(t)
	c := testpb.NewTestServiceClient(r.client)
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{})
		return err
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	r.mgr.Stop()
	waitState(t, r.client, func(s connectivity.State) bool { return s != connectivity.Ready }, "leaves Ready")
	var addr string
	r.mgr, addr = startManager(t, r.mgrAddr)
	if addr != r.mgrAddr {
		t.Fatalf("manager back on %s, want %s", addr, r.mgrAddr)
	}
	r.client.Connect()
	waitState(t, r.client, func(s connectivity.State) bool { return s == connectivity.Ready }, "is Ready again")
	if err := call(); err != nil {
		t.Fatalf("call after the manager came back: %v", err)
	}
}

func waitState(t *testing.T, cc *grpc.ClientConn, ok func(connectivity.State) bool, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		s := cc.GetState()
		if ok(s) {
			return
		}
		if s == connectivity.Idle {
			cc.Connect()
		}
		if !cc.WaitForStateChange(ctx, s) {
			t.Fatalf("the client's connection never %s (last %s)", what, s)
		}
	}
}

// A client that pings while idle, as the daemon does, keeps its connection
// when the proxy's policy permits it; gRPC's default policy (pings at most
// every 5 minutes) would close it at the fourth ping.
func TestIdleClientPingsKeepItsConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for four keepalive pings (50s)")
	}
	r := newRig(t, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}))
	r.client.Connect()
	waitState(t, r.client, func(s connectivity.State) bool { return s == connectivity.Ready }, "is Ready")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	if r.client.WaitForStateChange(ctx, connectivity.Ready) {
		t.Fatalf("the idle client's connection went %s", r.client.GetState())
	}
}

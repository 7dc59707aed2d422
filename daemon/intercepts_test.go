package daemon

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/tunnel"

	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
)

// A flow goes only to a local port the owner agreed to when the
// intercept was created; a port first named by a flow is never dialed
// (a replace intercept must not open the laptop's ssh or database).
func TestTargetLocalPort(t *testing.T) {
	global := target{port: 8080, local: 7000, covered: []uint32{8080}}
	replace := target{port: 8080, local: 7000, replace: true, portMap: map[uint32]uint32{9090: 7001}, covered: []uint32{5432, 8080, 9090}}
	portless := target{local: 7000, replace: true, portMap: map[uint32]uint32{9090: 7001}, covered: []uint32{5432, 9090}}
	const refused = 0
	for _, tc := range []struct {
		name   string
		t      target
		arrive uint32
		want   uint32 // refused: not dialed
	}{
		{"global, its port", global, 8080, 7000},
		{"global, agent did not say", global, 0, 7000},
		{"global never maps another port", global, 9090, refused},
		{"replace, its port", replace, 8080, 7000},
		{"replace, agent did not say", replace, 0, 7000},
		{"replace, a mapped port", replace, 9090, 7001},
		{"replace, a declared unmapped port keeps its number", replace, 5432, 5432},
		{"replace, an undeclared port is never dialed", replace, 22, refused},
		{"replace, 7777 is never dialed", replace, 7777, refused},
		{"replace without a port, a mapped port", portless, 9090, 7001},
		{"replace without a port, a declared port to --to", portless, 5432, 7000},
		{"replace without a port, an undeclared port", portless, 22, refused},
		{"replace without a port, agent did not say", portless, 0, refused},
		{"a target nobody told about covers nothing", target{port: 8080, local: 7000, replace: true}, 8080, refused},
	} {
		got, ok := tc.t.localPort(tc.arrive)
		if ok != (tc.want != refused) || got != tc.want {
			t.Errorf("%s: flow on %d goes to %d (%v), want %d", tc.name, tc.arrive, got, ok, tc.want)
		}
	}
}

func TestNewTargetRefusesBadPorts(t *testing.T) {
	spec := func(kind pbm.InterceptKind) *pbm.InterceptSpec {
		return &pbm.InterceptSpec{Name: "x", Workload: "default/web", Port: 8080, Kind: kind}
	}
	for _, tc := range []struct {
		name string
		req  *pb.InterceptRequest
		ok   bool
	}{
		{"global", &pb.InterceptRequest{Spec: spec(pbm.InterceptKind_GLOBAL), LocalPort: 7000}, true},
		{"replace with a map", &pb.InterceptRequest{Spec: spec(pbm.InterceptKind_REPLACE), LocalPort: 7000, PortMap: map[uint32]uint32{9090: 7001}}, true},
		{"no --to", &pb.InterceptRequest{Spec: spec(pbm.InterceptKind_GLOBAL)}, false},
		{"--to beyond 65535", &pb.InterceptRequest{Spec: spec(pbm.InterceptKind_GLOBAL), LocalPort: 70000}, false},
		{"a map without replace", &pb.InterceptRequest{Spec: spec(pbm.InterceptKind_HTTP), LocalPort: 7000, PortMap: map[uint32]uint32{9090: 7001}}, false},
		{"a map to port 0", &pb.InterceptRequest{Spec: spec(pbm.InterceptKind_REPLACE), LocalPort: 7000, PortMap: map[uint32]uint32{9090: 0}}, false},
		{"a map of the intercept's own port", &pb.InterceptRequest{Spec: spec(pbm.InterceptKind_REPLACE), LocalPort: 7000, PortMap: map[uint32]uint32{8080: 7001}}, false},
	} {
		_, err := newTarget(tc.req)
		if tc.ok != (err == nil) {
			t.Errorf("%s: error %v", tc.name, err)
		}
		if err != nil && status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", tc.name, err)
		}
	}
}

// An intercept the manager no longer lists (left, revoked, ended) takes its
// target with it; one not listed yet (just created) keeps its own.
func TestTargetsFollowTheManagersList(t *testing.T) {
	s := &session{log: slog.New(slog.DiscardHandler)}
	s.icepts.targets = map[string]target{"a": {local: 7000}, "b": {local: 7001}, "new": {local: 7002}}
	info := func(id string) *pbm.InterceptInfo { return &pbm.InterceptInfo{Id: id} }
	s.handleEvent(context.Background(), &pbm.SessionEvent{InterceptsChanged: true, Intercepts: []*pbm.InterceptInfo{info("a"), info("b")}})
	s.handleEvent(context.Background(), &pbm.SessionEvent{InterceptsChanged: true, Intercepts: []*pbm.InterceptInfo{info("a")}})
	if _, ok := s.icepts.targets["b"]; ok {
		t.Error("the target of an intercept the manager dropped is kept")
	}
	for _, id := range []string{"a", "new"} {
		if _, ok := s.icepts.targets[id]; !ok {
			t.Errorf("target %q is gone", id)
		}
	}
}

// claimManager is the manager's side of InboundTunnel: it answers a claim
// with claimErr, or else confirms it and records the daemon's answer.
type claimManager struct {
	pbm.UnimplementedManagerServer
	claimErr error
	answers  chan *pbm.Opened
}

func (m *claimManager) InboundTunnel(stream grpc.BidiStreamingServer[pbm.Frame, pbm.Frame]) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if m.claimErr != nil {
		return m.claimErr
	}
	if err := stream.Send(&pbm.Frame{Opened: &pbm.Opened{Status: pbm.OpenStatus_OPEN_OK}}); err != nil {
		return err
	}
	f, err := stream.Recv()
	if err != nil {
		return err
	}
	m.answers <- f.GetOpened()
	return nil
}

// The daemon dials a local port for an inbound flow only when the
// intercept covers the flow's workload port and the manager confirmed that
// the flow still waits: never a port first named by the flow (a replace
// intercept must not expose 127.0.0.1:22), never for an agent that gave up.
func TestInboundDialsOnlyCoveredWaitingFlows(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	lport := uint32(ln.Addr().(*net.TCPAddr).Port)

	for _, tc := range []struct {
		name     string
		covered  []uint32
		claimErr error
		wantDial bool
	}{
		{"a covered port is dialed", []uint32{8080, lport}, nil, true},
		{"an undeclared port is not", []uint32{8080}, nil, false},
		{"a flow the agent gave up is not", []uint32{8080, lport}, status.Error(codes.NotFound, "no inbound flow is waiting"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &claimManager{claimErr: tc.claimErr, answers: make(chan *pbm.Opened, 1)}
			srvLn, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			pbm.RegisterManagerServer(srv, m)
			go srv.Serve(srvLn)
			defer srv.Stop()
			cc, err := grpc.NewClient(srvLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			s := &session{log: slog.New(slog.DiscardHandler), metrics: newMetrics(), tunnels: tunnel.NewClient(cc, 0)}
			defer s.tunnels.Close()
			// A replace intercept of port 8080 whose other ports keep
			// their numbers: lport would go to lport if it were covered.
			s.icepts.targets = map[string]target{"x": {port: 8080, local: 7, replace: true, covered: tc.covered}}
			s.inbound(t.Context(), &pbm.InboundDial{FlowId: "f", InterceptId: "x", Port: lport})
			select {
			case <-accepted:
				if !tc.wantDial {
					t.Fatal("the local port was dialed")
				}
			case <-time.After(200 * time.Millisecond):
				if tc.wantDial {
					t.Fatal("the covered port was not dialed")
				}
			}
			if tc.claimErr != nil {
				return
			}
			want := pbm.OpenStatus_OPEN_OK
			if !tc.wantDial {
				want = pbm.OpenStatus_OPEN_REFUSED
			}
			if got := <-m.answers; got.GetStatus() != want {
				t.Errorf("daemon answered %v, want %v", got, want)
			}
		})
	}
}

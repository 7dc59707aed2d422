package daemon

import (
	"context"
	"log/slog"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
)

func TestTargetLocalPort(t *testing.T) {
	global := target{port: 8080, local: 7000}
	replace := target{port: 8080, local: 7000, replace: true, portMap: map[uint32]uint32{9090: 7001}}
	portless := target{local: 7000, replace: true, portMap: map[uint32]uint32{9090: 7001}}
	for _, tc := range []struct {
		name   string
		t      target
		arrive uint32
		want   uint32
	}{
		{"global, its port", global, 8080, 7000},
		{"global, agent did not say", global, 0, 7000},
		{"global never maps another port", global, 9090, 7000},
		{"replace, its port", replace, 8080, 7000},
		{"replace, agent did not say", replace, 0, 7000},
		{"replace, a mapped port", replace, 9090, 7001},
		{"replace, an unmapped port keeps its number", replace, 5432, 5432},
		{"replace without a port, a mapped port", portless, 9090, 7001},
		{"replace without a port, the rest to --to", portless, 5432, 7000},
	} {
		if got := tc.t.localPort(tc.arrive); got != tc.want {
			t.Errorf("%s: flow on %d goes to %d, want %d", tc.name, tc.arrive, got, tc.want)
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

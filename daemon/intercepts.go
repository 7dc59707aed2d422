package daemon

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tether-dev/tether/activity"
	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
)

// localDialTimeout bounds the dial of the developer's local port for an
// inbound flow.
const localDialTimeout = 3 * time.Second

// intercepts is a session's side of its intercepts. Inbound flows never
// count as activity: a pod calling the laptop is not the person using it.
type intercepts struct {
	// mu guards targets, infos and notices.
	mu      sync.Mutex
	targets map[string]target // intercept id -> where its flows go
	infos   []*pbm.InterceptInfo
	notices []string
	flows   sync.WaitGroup // inbound flows, waited for by the watcher
}

// target is where an intercept's inbound flows go on this machine.
type target struct {
	port    uint32            // the intercept's workload port
	local   uint32            // where flows to that port go
	replace bool              // the intercept takes every port of the workload
	portMap map[uint32]uint32 // replace: other workload ports -> local ports
	// covered are the workload ports the manager said the intercept
	// covers when it was created (the agents' declared ports and the
	// above); no other port is ever dialed.
	covered []uint32
}

// localPort is the local port for a flow that arrived on workload port p
// (0: the intercept's port), and false for a port the intercept does not
// cover: a flow never picks a local port the owner did not agree to. A
// replace intercept sends a covered port it does not map to the same port
// number locally, as the app it replaces would listen on it; one without a
// port of its own sends every unmapped port to its local port.
func (t target) localPort(p uint32) (uint32, bool) {
	if p == 0 {
		p = t.port
	}
	switch {
	case p == 0 || !slices.Contains(t.covered, p):
		return 0, false
	case p == t.port:
		return t.local, true
	case t.portMap[p] != 0:
		return t.portMap[p], true
	case t.port == 0:
		return t.local, true
	default:
		return p, true
	}
}

// watch follows the manager's session events until ctx ends, reconnecting
// with backoff when the stream breaks.
func (s *session) watch(ctx context.Context) {
	defer s.icepts.flows.Wait()
	failures := 0
	for ctx.Err() == nil {
		stream, err := pbm.NewManagerClient(s.cc).WatchSession(ctx, &pbm.WatchSessionRequest{})
		for err == nil {
			var ev *pbm.SessionEvent
			if ev, err = stream.Recv(); err != nil {
				break
			}
			failures = 0
			s.handleEvent(ctx, ev)
		}
		if ctx.Err() != nil {
			return
		}
		d := tunnel.ReconnectDelay(failures)
		failures++
		s.log.Debug("session watch broke; retrying", "error", err, "in", d)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

func (s *session) handleEvent(ctx context.Context, ev *pbm.SessionEvent) {
	if ev.SubnetsChanged {
		s.updateSubnets(ev.Subnets)
	}
	ic := &s.icepts
	dropped := false
	ic.mu.Lock()
	if ev.InterceptsChanged {
		// The events of a watch come in order, so an id the last list had
		// and this one lacks is gone for good (left, revoked, ended). An
		// id no list has had yet may be one Intercept just created.
		for _, old := range ic.infos {
			if !slices.ContainsFunc(ev.Intercepts, func(i *pbm.InterceptInfo) bool { return i.Id == old.Id }) {
				delete(ic.targets, old.Id)
				dropped = true
			}
		}
		ic.infos = ev.Intercepts
		for _, info := range ev.Intercepts {
			if info.Message != "" {
				s.log.Info("intercept", "name", info.Spec.GetName(), "state", info.State, "message", info.Message)
			}
		}
	}
	if ev.Notice != "" {
		ic.notices = append(ic.notices, ev.Notice)
		s.log.Warn("notice from the traffic manager", "notice", ev.Notice)
	}
	ic.mu.Unlock()
	if dropped {
		s.targetsChanged()
	}
	if d := ev.Dial; d != nil {
		ic.flows.Add(1)
		go func() {
			defer ic.flows.Done()
			s.inbound(ctx, d)
		}()
	}
}

// inbound delivers one flow from an intercepted pod to the local port.
func (s *session) inbound(ctx context.Context, d *pbm.InboundDial) {
	s.inboundFlows.Add(1)
	s.metrics.flow(activity.InboundFlow, false)
	s.icepts.mu.Lock()
	t, known := s.icepts.targets[d.InterceptId]
	s.icepts.mu.Unlock()
	port, covered := t.localPort(d.Port)
	// Answer calls dial only once the manager confirmed that the flow
	// still waits: a flow whose agent gave up never reaches the local app.
	var local net.Conn
	dial := func() *pbm.Opened {
		refuse := func(msg string) *pbm.Opened {
			s.log.Debug("inbound flow refused", "intercept", d.InterceptId, "port", d.Port, "reason", msg)
			return &pbm.Opened{Status: pbm.OpenStatus_OPEN_REFUSED, Error: msg}
		}
		switch {
		case !known:
			return refuse("no local port for this intercept")
		case !covered:
			return refuse(fmt.Sprintf("workload port %d is not one the intercept covers (%v)", d.Port, t.covered))
		}
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
		c, err := (&net.Dialer{Timeout: localDialTimeout}).DialContext(ctx, "tcp", addr.String())
		if err != nil {
			return refuse(err.Error())
		}
		local = c
		return &pbm.Opened{Status: pbm.OpenStatus_OPEN_OK}
	}
	f, err := s.tunnels.Answer(ctx, d.FlowId, dial)
	if err != nil || f == nil {
		if local != nil {
			local.Close()
		}
		if err != nil {
			s.log.Debug("inbound flow", "intercept", d.InterceptId, "error", err)
		}
		return
	}
	remote := tunnel.NewConn(f, local.LocalAddr(), &net.TCPAddr{})
	if err := tunnel.Splice(local.(*net.TCPConn), remote); err != nil {
		s.log.Debug("inbound flow reset", "intercept", d.InterceptId, "error", err)
	}
}

func (s *session) interceptStatus() ([]*pb.LocalIntercept, []string) {
	ic := &s.icepts
	ic.mu.Lock()
	defer ic.mu.Unlock()
	out := make([]*pb.LocalIntercept, 0, len(ic.infos))
	for _, info := range ic.infos {
		t := ic.targets[info.Id]
		out = append(out, &pb.LocalIntercept{Info: info, LocalPort: t.local, PortMap: t.portMap})
	}
	return out, append([]string(nil), ic.notices...)
}

// sessionOrErr returns the live session or an error the CLI can show.
func (d *Daemon) sessionOrErr() (*session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sess == nil {
		return nil, status.Error(codes.FailedPrecondition, "not connected: run `tether connect` first")
	}
	return d.sess, nil
}

// Intercept implements pb.DaemonServer.
func (d *Daemon) Intercept(ctx context.Context, req *pb.InterceptRequest) (*pbm.InterceptInfo, error) {
	s, err := d.sessionOrErr()
	if err != nil {
		return nil, err
	}
	t, err := newTarget(req)
	if err != nil {
		return nil, err
	}
	spec := proto.CloneOf(req.Spec)
	spec.Ports = slices.Sorted(maps.Keys(req.PortMap))
	info, err := pbm.NewManagerClient(s.cc).CreateIntercept(ctx, &pbm.CreateInterceptRequest{Spec: spec})
	if err != nil {
		return nil, err
	}
	t.covered = []uint32{t.port}
	if t.replace {
		t.covered = info.Ports
	}
	s.icepts.mu.Lock()
	s.icepts.targets[info.Id] = t
	s.icepts.mu.Unlock()
	s.targetsChanged()
	return info, nil
}

// newTarget checks where req sends the intercept's flows.
func newTarget(req *pb.InterceptRequest) (target, error) {
	isPort := func(p uint32) bool { return p > 0 && p <= 65535 }
	if !isPort(req.LocalPort) {
		return target{}, status.Errorf(codes.InvalidArgument, "--to %d is not a port", req.LocalPort)
	}
	replace := req.Spec.GetKind() == pbm.InterceptKind_REPLACE
	if len(req.PortMap) > 0 && !replace {
		return target{}, status.Error(codes.InvalidArgument, "--to-port maps the other ports of a --replace intercept; this intercept takes one port")
	}
	for w, l := range req.PortMap {
		switch {
		case !isPort(w) || !isPort(l):
			return target{}, status.Errorf(codes.InvalidArgument, "--to-port %d=%d: both must be ports", w, l)
		case w == req.Spec.GetPort():
			return target{}, status.Errorf(codes.InvalidArgument, "--to-port %d=%d: port %d is the intercept's own, which --to sets", w, l, w)
		}
	}
	return target{port: req.Spec.GetPort(), local: req.LocalPort, replace: replace, portMap: req.PortMap}, nil
}

// Leave implements pb.DaemonServer.
func (d *Daemon) Leave(ctx context.Context, req *pb.LeaveRequest) (*pb.LeaveResponse, error) {
	s, err := d.sessionOrErr()
	if err != nil {
		return nil, err
	}
	if _, err := pbm.NewManagerClient(s.cc).RemoveIntercept(ctx, &pbm.RemoveInterceptRequest{Name: req.Name}); err != nil {
		return nil, err
	}
	return &pb.LeaveResponse{}, nil
}

// List implements pb.DaemonServer.
func (d *Daemon) List(ctx context.Context, req *pbm.ListInterceptsRequest) (*pbm.ListInterceptsResponse, error) {
	s, err := d.sessionOrErr()
	if err != nil {
		return nil, err
	}
	return pbm.NewManagerClient(s.cc).ListIntercepts(ctx, req)
}

// Revoke implements pb.DaemonServer.
func (d *Daemon) Revoke(ctx context.Context, req *pbm.RevokeInterceptRequest) (*pbm.RevokeInterceptResponse, error) {
	s, err := d.sessionOrErr()
	if err != nil {
		return nil, err
	}
	return pbm.NewManagerClient(s.cc).RevokeIntercept(ctx, req)
}

// RemoveAgents implements pb.DaemonServer.
func (d *Daemon) RemoveAgents(ctx context.Context, req *pbm.RemoveAgentsRequest) (*pbm.RemoveAgentsResponse, error) {
	s, err := d.sessionOrErr()
	if err != nil {
		return nil, err
	}
	return pbm.NewManagerClient(s.cc).RemoveAgents(ctx, req)
}

// ListWorkloads implements pb.DaemonServer.
func (d *Daemon) ListWorkloads(ctx context.Context, req *pbm.ListWorkloadsRequest) (*pbm.ListWorkloadsResponse, error) {
	s, err := d.sessionOrErr()
	if err != nil {
		return nil, err
	}
	return pbm.NewManagerClient(s.cc).ListWorkloads(ctx, req)
}

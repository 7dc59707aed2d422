package manager

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/manager/rbac"
	pb "github.com/tether-dev/tether/rpc/manager"
)

// workloadRef names the workload of an intercept spec ("namespace/name",
// checked by conflict.CheckWorkload).
func workloadRef(workload string) WorkloadRef {
	ns, name, _ := strings.Cut(workload, "/")
	return WorkloadRef{Namespace: ns, Name: name}
}

// specPorts are the workload ports an intercept of spec names itself.
func specPorts(spec *pb.InterceptSpec) []uint16 {
	var ports []uint16
	if spec.Port != 0 {
		ports = append(ports, uint16(spec.Port))
	}
	for _, p := range spec.Ports {
		ports = append(ports, uint16(p))
	}
	return ports
}

// checkAgents refuses, before anything changes, an intercept whose
// workload's pods could not take an agent for its ports.
func (s *Server) checkAgents(ctx context.Context, w Workload, spec *pb.InterceptSpec) error {
	ports := specPorts(spec)
	if s.injector == nil || len(ports) == 0 {
		return nil
	}
	if err := s.injector.Check(ctx, w, ports); err != nil {
		s.log.Info("intercept refused: no agent possible", "workload", w.Key(), "ports", ports, "error", err)
		return status.Errorf(codes.FailedPrecondition, "intercept %q: %v", spec.Name, err)
	}
	return nil
}

// injectAgents has x's workload run agents for x's ports. If it cannot,
// x is removed again: an intercept whose agents never come would wait
// forever.
func (s *Server) injectAgents(ctx context.Context, w Workload, x *intercept) error {
	if s.injector == nil {
		return nil
	}
	ports := make([]uint16, len(x.ports))
	for i, p := range x.ports {
		ports[i] = uint16(p)
	}
	err := s.injector.Inject(ctx, w, ports)
	if err == nil {
		return nil
	}
	s.mu.Lock()
	if s.intercepts[x.id] == x {
		s.removeInterceptLocked(x, s.now())
	}
	s.mu.Unlock()
	s.log.Warn("intercept removed: agents not injected", "intercept", x.id, "workload", w.Key(), "error", err)
	return status.Errorf(codes.FailedPrecondition, "intercept %q: the agents of %s could not be injected: %v", x.spec.Name, w.Key(), err)
}

// RemoveAgents implements pb.ManagerServer: authorized as revoke is (get
// and update on configmap traffic-manager), since it ends every
// intercept's traffic.
func (s *Server) RemoveAgents(ctx context.Context, _ *pb.RemoveAgentsRequest) (*pb.RemoveAgentsResponse, error) {
	sess, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if s.injector == nil {
		return nil, status.Error(codes.FailedPrecondition, "this traffic manager injects no agents (no webhook.port): stop agents started by hand yourself")
	}
	if s.authz == nil {
		return nil, status.Error(codes.PermissionDenied, "removing agents is disabled: the traffic manager has no rbac.policyFile or auth.mode kubernetes")
	}
	ok, reason, err := rbac.CanRevoke(ctx, s.authz, rbac.Subject{User: sess.user, Groups: sess.groups}, s.namespace)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "authorization failed: %v", err)
	}
	if !ok {
		s.log.Warn("agent removal refused", "by", sess.user, "reason", reason)
		return nil, status.Errorf(codes.PermissionDenied, "removing agents refused: %s", reason)
	}
	if err := s.injector.RemoveAll(ctx); err != nil {
		return nil, status.Errorf(codes.Internal, "remove agents: %v", err)
	}
	s.log.Info("agents removed", "by", sess.user)
	return &pb.RemoveAgentsResponse{}, nil
}

package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/manager/rbac"
	pb "github.com/tether-dev/tether/rpc/manager"
)

// Kinds of WorkloadError, so that the manager answers with the right code.
var (
	// ErrNoWorkload: no Deployment, StatefulSet or ReplicaSet has the
	// name (codes.NotFound).
	ErrNoWorkload = errors.New("no such workload")
	// ErrNotInterceptable: the name is a workload that cannot be
	// intercepted itself, e.g. a ReplicaSet that a Deployment owns
	// (codes.FailedPrecondition).
	ErrNotInterceptable = errors.New("the workload cannot be intercepted")
)

// WorkloadError is a refusal of Workloads.Resolve: Kind (ErrNoWorkload,
// ErrNotInterceptable) decides the code, Msg is what the user reads, saying
// what is missing and what exists.
type WorkloadError struct {
	Kind error
	Msg  string
}

func (e *WorkloadError) Error() string { return e.Msg }
func (e *WorkloadError) Unwrap() error { return e.Kind }

// resolveWorkload finds spec's workload and checks that a Service targets
// each port spec names, before the intercept changes anything. Without
// Workloads (the namespace lab) any workload and port are taken, by name.
func (s *Server) resolveWorkload(ctx context.Context, spec *pb.InterceptSpec) (Workload, error) {
	if s.workloads == nil {
		return Workload{WorkloadRef: workloadRef(spec.Workload)}, nil
	}
	ns, name, _ := strings.Cut(spec.Workload, "/")
	w, err := s.workloads.Resolve(ctx, ns, name)
	switch {
	case errors.Is(err, ErrNoWorkload):
		return Workload{}, status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrNotInterceptable):
		return Workload{}, status.Error(codes.FailedPrecondition, err.Error())
	case err != nil:
		s.log.Warn("workload lookup failed", "workload", spec.Workload, "error", err)
		return Workload{}, status.Errorf(codes.Unavailable, "finding workload %s: %v", spec.Workload, err)
	}
	if err := checkWorkloadPorts(w, spec); err != nil {
		return Workload{}, err
	}
	return w, nil
}

// checkWorkloadPorts refuses a port of spec that no Service of w targets:
// an intercept takes the traffic that Services send to a container port.
func checkWorkloadPorts(w Workload, spec *pb.InterceptSpec) error {
	what := fmt.Sprintf("%s %s in %s", strings.ToLower(w.Kind), w.Name, w.Namespace)
	if len(w.Ports) == 0 {
		return status.Errorf(codes.FailedPrecondition, "%s has no port that a Service targets: an intercept takes the traffic a Service sends to its pods; create one (kubectl expose %s %s -n %s --port PORT)",
			what, strings.ToLower(w.Kind), w.Name, w.Namespace)
	}
	want := slices.Clone(spec.Ports)
	if spec.Port != 0 {
		want = append([]uint32{spec.Port}, want...)
	}
	for _, p := range want {
		if slices.ContainsFunc(w.Ports, func(wp WorkloadPort) bool { return uint32(wp.Port) == p }) {
			continue
		}
		msg := fmt.Sprintf("%s has no Service port %d; its Services expose %s", what, p, exposedText(w.Ports))
		for _, wp := range w.Ports {
			for _, v := range wp.Via {
				if uint32(v.Port) == p {
					msg += fmt.Sprintf("; Service %s's port %d targets container port %d: give --port %d", v.Service, v.Port, wp.Port, wp.Port)
					return status.Error(codes.InvalidArgument, msg)
				}
			}
		}
		return status.Error(codes.InvalidArgument, msg)
	}
	return nil
}

// exposedText lists ports as people read them: "8080 (web:80→http), 9090
// (metrics:9090→9090)".
func exposedText(ports []WorkloadPort) string {
	out := make([]string, 0, len(ports))
	for _, p := range ports {
		target := p.Name
		if target == "" {
			target = strconv.Itoa(int(p.Port))
		}
		via := make([]string, 0, len(p.Via))
		for _, v := range p.Via {
			via = append(via, v.String()+"→"+target)
		}
		if len(via) == 0 {
			out = append(out, strconv.Itoa(int(p.Port)))
			continue
		}
		out = append(out, fmt.Sprintf("%d (%s)", p.Port, strings.Join(via, ", ")))
	}
	return strings.Join(out, ", ")
}

// ListWorkloads implements pb.ManagerServer. The cluster's workloads need
// list on deployments in the namespace, as kubectl get deployments does.
// Without Workloads (the namespace lab) the workloads are those with
// agents or intercepts, which ListIntercepts shows every user anyway.
func (s *Server) ListWorkloads(ctx context.Context, req *pb.ListWorkloadsRequest) (*pb.ListWorkloadsResponse, error) {
	sess, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	ns := req.GetNamespace()
	if ns == "" {
		return nil, status.Error(codes.InvalidArgument, "ListWorkloads needs a namespace")
	}
	if s.authz != nil && s.workloads != nil {
		ok, reason, err := rbac.Check(ctx, s.authz, rbac.Subject{User: sess.user, Groups: sess.groups}, rbac.ListWorkloadsRequest(ns))
		if err != nil {
			return nil, status.Errorf(codes.Internal, "authorization failed: %v", err)
		}
		if !ok {
			s.log.Warn("workload list refused", "user", sess.user, "namespace", ns, "reason", reason)
			return nil, status.Errorf(codes.PermissionDenied, "listing workloads refused: %s", reason)
		}
	}
	var found []Workload
	if s.workloads != nil {
		if found, err = s.workloads.List(ctx, ns); err != nil {
			s.log.Warn("workload list failed", "namespace", ns, "error", err)
			return nil, status.Errorf(codes.Unavailable, "listing workloads of %s: %v", ns, err)
		}
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	byKey := map[string]*pb.WorkloadInfo{}
	for _, w := range found {
		byKey[w.Key()] = workloadInfo(w)
	}
	if s.workloads == nil {
		for key := range s.agents {
			addLabWorkload(byKey, ns, key)
		}
		for _, x := range s.intercepts {
			addLabWorkload(byKey, ns, x.spec.Workload)
		}
	}
	for _, x := range s.sortedInterceptsLocked() {
		if info := byKey[x.spec.Workload]; info != nil {
			info.Intercepts = append(info.Intercepts, s.infoLocked(x, now))
		}
	}
	resp := &pb.ListWorkloadsResponse{}
	for key, info := range byKey {
		info.Agents = uint32(len(s.agents[key]))
		resp.Workloads = append(resp.Workloads, info)
	}
	slices.SortFunc(resp.Workloads, func(a, b *pb.WorkloadInfo) int { return strings.Compare(a.Name, b.Name) })
	return resp, nil
}

// addLabWorkload adds the workload called key if it is in ns.
func addLabWorkload(byKey map[string]*pb.WorkloadInfo, ns, key string) {
	wns, name, _ := strings.Cut(key, "/")
	if wns != ns || byKey[key] != nil {
		return
	}
	byKey[key] = &pb.WorkloadInfo{Namespace: wns, Name: name}
}

func workloadInfo(w Workload) *pb.WorkloadInfo {
	info := &pb.WorkloadInfo{Namespace: w.Namespace, Name: w.Name, Kind: w.Kind}
	for _, p := range w.Ports {
		wp := &pb.WorkloadPort{Port: uint32(p.Port), Name: p.Name, Container: p.Container}
		for _, v := range p.Via {
			wp.Services = append(wp.Services, v.String())
		}
		info.Ports = append(info.Ports, wp)
	}
	return info
}

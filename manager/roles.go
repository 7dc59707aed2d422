package manager

import (
	"context"
	"path"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/manager/rbac"
)

// Roles. With auth.tokenFile, an identity in AgentGroup is an agent and
// may call only WatchAgent and AgentTunnel; every other identity is a user
// and may call everything else. Without a token file (development mode)
// there are no identities to tell apart, so anyone may call anything; the
// manager then listens on loopback only unless told otherwise.

// refuseAgent refuses a user call (method) that carries an agent's token.
// A call without a known token is left to the call's own checks.
func (s *Server) refuseAgent(ctx context.Context, method string) error {
	if s.authn == nil {
		return nil
	}
	id, _, ok, _ := s.lookup(ctx)
	if !ok || !id.Agent() {
		return nil
	}
	s.log.Warn("agent token refused on a user call", "method", method, "agent", id.User)
	return status.Errorf(codes.PermissionDenied, "%s needs the user role (a token of auth.tokenFile outside group %s); this token is %s",
		method, AgentGroup, id.describe())
}

// authenticateAgent admits an agent to method: by a token of the agent
// role. In development mode anyone is admitted, with no identity.
func (s *Server) authenticateAgent(ctx context.Context, method string) (Identity, error) {
	if s.authn == nil {
		return Identity{}, nil
	}
	id, err := s.identify(ctx, "")
	if err != nil {
		return Identity{}, err
	}
	if !id.Agent() {
		s.log.Warn("user token refused on an agent call", "method", method, "user", id.User)
		return Identity{}, status.Errorf(codes.PermissionDenied, "%s needs the agent role (group %s in auth.tokenFile); this token is %s",
			method, AgentGroup, id.describe())
	}
	return id, nil
}

// mayServe checks that agent id is bound to workload: verb serve on
// resource workloads of tether.dev (rbac.ServeRequest). Without a policy
// every agent serves every workload, as New warns.
func (s *Server) mayServe(ctx context.Context, id Identity, workload string) error {
	if s.authz == nil {
		return nil
	}
	ok, reason, err := rbac.Check(ctx, s.authz, rbac.Subject{User: id.User, Groups: id.Groups}, rbac.ServeRequest(workload))
	if err != nil {
		return status.Errorf(codes.Internal, "authorization failed: %v", err)
	}
	if !ok {
		s.log.Warn("agent refused", "agent", id.User, "workload", workload, "reason", reason)
		return status.Errorf(codes.PermissionDenied, "agent %s may not serve %s: %s", id.User, workload, reason)
	}
	return nil
}

// methodName is the short name of the call's method ("Sessions"), for
// refusals.
func methodName(ctx context.Context) string {
	if m, ok := grpc.Method(ctx); ok {
		return path.Base(m)
	}
	return "this call"
}

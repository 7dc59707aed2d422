package manager

import (
	"context"
	"path"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/manager/rbac"
	"github.com/tether-dev/tether/wire"
)

// Roles. With auth.tokenFile, an identity in AgentGroup is an agent and
// may call only WatchAgent and AgentTunnel; every other identity is a user
// and may call everything else. An Authenticator that tells agents by
// their own credential (AgentAuthenticator, in a cluster a pod's token)
// is asked on the agent calls only, and its agents serve only the
// workload their credential names. Without a token file (development mode)
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
	role := "a token of auth.tokenFile outside group " + AgentGroup
	if _, ok := s.authn.(AgentAuthenticator); ok {
		role = "an identity the API server places outside group " + AgentGroup
	}
	return status.Errorf(codes.PermissionDenied, "%s needs the user role (%s); this token is %s", method, role, id.describe())
}

// authenticateAgent admits an agent to method: by a token of the agent
// role, or, where the Authenticator tells agents by their own credential
// (AgentAuthenticator), by that credential only. In development mode
// anyone is admitted, with no identity.
func (s *Server) authenticateAgent(ctx context.Context, method string) (Identity, error) {
	if s.authn == nil {
		return Identity{}, nil
	}
	if aa, ok := s.authn.(AgentAuthenticator); ok {
		return s.authenticatePodAgent(ctx, method, aa)
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

// authenticatePodAgent admits an agent by the credential aa judges. A
// developer's token is not one: it is refused saying what an agent
// presents instead.
func (s *Server) authenticatePodAgent(ctx context.Context, method string, aa AgentAuthenticator) (Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	tok := bearer(first(md, wire.MDAuthorization))
	if tok == "" {
		s.log.Warn("agent call without a token refused", "method", method)
		return Identity{}, status.Errorf(codes.Unauthenticated, "%s needs an agent's token: %s (agent --token-file)", method, aa.AgentCredential())
	}
	id, ok, err := aa.AuthenticateAgent(ctx, tok)
	if !ok {
		why := "the API server does not accept it as one"
		if err != nil {
			why = err.Error()
		}
		s.log.Warn("token refused as an agent's", "method", method, "error", why)
		return Identity{}, status.Errorf(codes.PermissionDenied, "%s needs an agent's token, %s; this token is not one (a developer's token never is): %s",
			method, aa.AgentCredential(), why)
	}
	if !slices.Contains(id.Groups, AgentGroup) {
		id.Groups = append(slices.Clip(id.Groups), AgentGroup)
	}
	return id, nil
}

// mayServe checks that agent id may serve workload: an agent bound to a
// workload by its credential serves that one only; any other needs verb
// serve on resource workloads of tether.dev (rbac.ServeRequest). Without
// a policy every agent serves every workload, as New warns.
func (s *Server) mayServe(ctx context.Context, id Identity, workload string) error {
	if id.Workload != "" {
		if id.Workload != workload {
			s.log.Warn("agent refused: another workload's pod", "agent", id.User, "pod", id.Pod, "its_workload", id.Workload, "workload", workload)
			return status.Errorf(codes.PermissionDenied, "agent of pod %s may serve only its own workload %s, not %s", id.Pod, id.Workload, workload)
		}
		return nil
	}
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

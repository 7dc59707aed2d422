package rbac

import (
	"context"
	"fmt"
	"strings"
)

// APIGroup is the API group of Tether's own resources in RBAC rules.
const APIGroup = "tether.dev"

// ServeRequest asks whether an agent may serve workload ("namespace/name"):
// get its routes and open flows for its intercepts. Bindings grant it as
// verb serve on resource workloads of API group tether.dev, with the
// workload's name among resourceNames, in the workload's namespace.
func ServeRequest(workload string) Request {
	ns, name, _ := strings.Cut(workload, "/")
	return Request{Verb: "serve", APIGroup: APIGroup, Resource: "workloads", Namespace: ns, Name: name}
}

// CreateInterceptRequest asks whether a user may create intercepts on
// workloads of namespace: verb create on resource intercepts of API group
// tether.dev there. Like any Kubernetes create, it names no object, so a
// rule with resourceNames never grants it.
func CreateInterceptRequest(namespace string) Request {
	return Request{Verb: "create", APIGroup: APIGroup, Resource: "intercepts", Namespace: namespace}
}

// ListWorkloadsRequest asks whether a user may list the workloads of
// namespace (tether list --workloads): verb list on deployments of API
// group apps there, as kubectl get deployments needs.
func ListWorkloadsRequest(namespace string) Request {
	return Request{Verb: "list", APIGroup: "apps", Resource: "deployments", Namespace: namespace}
}

// Check decides one request. When refused, reason names the missing
// permission as CanRevoke does, e.g.
//
//	user "bob" may not create intercepts.tether.dev in namespace "default"
//	user "web-agent" may not serve workloads.tether.dev "web" in namespace "default"
//
// followed, in parentheses, by any details the Authorizer gave. err
// reports a failure to decide, never a refusal.
func Check(ctx context.Context, a Authorizer, s Subject, r Request) (ok bool, reason string, err error) {
	if a == nil {
		return false, "", fmt.Errorf("check %s: no authorizer", describe(r))
	}
	ok, why, err := a.Authorize(ctx, s, r)
	if err != nil {
		return false, "", fmt.Errorf("check %s for user %q: %w", describe(r), s.User, err)
	}
	if ok {
		return true, why, nil
	}
	reason = fmt.Sprintf("user %q may not %s", s.User, describe(r))
	if why != "" {
		reason += " (" + why + ")"
	}
	return false, reason, nil
}

// describe is r as refusals name it: `serve workloads.tether.dev "web" in
// namespace "default"`.
func describe(r Request) string {
	res := r.Resource
	if r.APIGroup != "" {
		res += "." + r.APIGroup
	}
	s := r.Verb + " " + res
	if r.Name != "" {
		s += fmt.Sprintf(" %q", r.Name)
	}
	if r.Namespace != "" {
		s += fmt.Sprintf(" in namespace %q", r.Namespace)
	}
	return s
}

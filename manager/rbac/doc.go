// Package rbac decides whether a user may do something, using Kubernetes
// RBAC semantics. The traffic manager uses it for `tether revoke`, which is
// allowed only to users who may both get and update the configmap
// "traffic-manager" in the manager's namespace (see CanRevoke); for
// creating intercepts (create on intercepts.tether.dev in the workload's
// namespace, CreateInterceptRequest); and for which workloads an agent
// serves (serve on workloads.tether.dev, ServeRequest). Check names a
// refused permission.
//
// In a cluster, an Authorizer can be backed by SubjectAccessReview. In
// standalone mode there is no API server, so Policy evaluates
// rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding and
// ClusterRoleBinding objects read from a YAML file, following
// k8s.io/kubernetes plugin/pkg/auth/authorizer/rbac, the rule resolver in
// pkg/registry/rbac/validation and the helpers in pkg/apis/rbac/v1:
//
//   - ClusterRoleBindings grant their ClusterRole in every namespace and for
//     cluster-scoped requests. A RoleBinding grants its Role (looked up in
//     the binding's own namespace) or ClusterRole only within the binding's
//     namespace. A roleRef to a role that is not in the policy grants
//     nothing; the denial reason names it.
//   - A binding subject of kind User matches the user's name, Group one of
//     the user's groups, and ServiceAccount the user name
//     "system:serviceaccount:NS:NAME" (NS defaults to the RoleBinding's
//     namespace). Like the API server's authenticated-group adder, every
//     user with a name other than "system:anonymous" is also in the group
//     "system:authenticated", unless its groups already hold it or
//     "system:unauthenticated". Service-account groups
//     ("system:serviceaccounts", "system:serviceaccounts:NS") are not added:
//     a static token file, like Kubernetes' own, gives exactly the groups it
//     lists.
//   - A rule matches when its verbs, apiGroups and resources match ("*"
//     matches anything, "" is the core group, "resource/subresource" and
//     "*/subresource" as in Kubernetes) and, if it lists resourceNames, the
//     request's name is among them. A rule that lists resourceNames never
//     matches a request without a name (such as list or create); this holds
//     even for the degenerate resourceNames [""], where Kubernetes would
//     match. nonResourceURLs rules never match: Request has no URL path.
//   - An aggregated ClusterRole (aggregationRule.clusterRoleSelectors) gets
//     the union of the rules of the other ClusterRoles whose labels match
//     any selector, as the clusterrole-aggregation controller computes it;
//     like the controller, this replaces the rules written in the
//     aggregated ClusterRole itself. Chains of aggregated roles are
//     followed; cycles resolve to the smallest consistent set of rules.
//
// Objects are checked as the API server's validation would check them
// (roleRef kind, apiGroup and name, subject kinds, rule fields), so that a
// policy that a cluster would refuse is refused here too. Names of
// namespaced objects must carry metadata.namespace: there is no current
// namespace to default to. Unknown fields are errors, because a misspelt
// field such as "resourceName" would otherwise widen a grant silently.
//
// A Policy is immutable once parsed and safe for concurrent use.
package rbac

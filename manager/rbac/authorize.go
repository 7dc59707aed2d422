package rbac

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Subject is who asks: the user and their groups (from the manager's static
// token file).
type Subject struct {
	User   string
	Groups []string
}

// Request is one permission check, like a SubjectAccessReview's
// ResourceAttributes. Resource may name a subresource as
// "resource/subresource". An empty Namespace asks about a cluster-scoped
// resource (or all namespaces), which only ClusterRoleBindings grant.
type Request struct {
	Verb, APIGroup, Resource, Namespace, Name string
}

// Authorizer decides requests; an in-cluster SubjectAccessReview can
// implement it later. When allowed, reason says what allowed it. When
// denied, reason may be empty; it carries details such as bindings whose
// role is missing. err is for failures to decide, not for denials.
type Authorizer interface {
	Authorize(ctx context.Context, s Subject, r Request) (allowed bool, reason string, err error)
}

var _ Authorizer = (*Policy)(nil)

// Well-known user and group names, from k8s.io/apiserver
// pkg/authentication/user and serviceaccount.
const (
	anonymousUser            = "system:anonymous"
	allAuthenticated         = "system:authenticated"
	allUnauthenticated       = "system:unauthenticated"
	serviceAccountUserPrefix = "system:serviceaccount:"
)

// Authorize reports whether a binding in the policy grants r to s, following
// the RBAC authorizer of the Kubernetes API server: it visits the
// ClusterRoleBindings and then the RoleBindings of r.Namespace, each in file
// order, and allows on the first rule that matches. The reason names that
// binding, its role and the subject that matched, e.g.
//
//	RBAC: allowed by RoleBinding "tether-revokers/tether" of Role "tether-revoker" to User "alice"
//
// A denial's reason is empty unless a binding that applies to s refers to a
// role missing from the policy; then it names those bindings.
func (p *Policy) Authorize(ctx context.Context, s Subject, r Request) (bool, string, error) {
	if err := ctx.Err(); err != nil {
		return false, "", fmt.Errorf("authorize: %w", err)
	}
	if r.Verb == "" || r.Resource == "" {
		return false, "", errors.New("authorize: request needs a verb and a resource")
	}
	if p == nil {
		return false, "", nil
	}
	// Rules match the combined "resource/subresource", and "*/subresource".
	_, subresource, _ := strings.Cut(r.Resource, "/")
	groups := effectiveGroups(s)

	var missing []string
	visit := func(bindings []*binding, namespace string) (string, bool) {
		for _, b := range bindings {
			i, ok := b.appliesTo(s.User, groups, namespace)
			if !ok {
				continue
			}
			ruleSets, err := p.roleRefRules(b)
			if err != nil {
				missing = append(missing, err.Error())
				continue
			}
			for _, rules := range ruleSets {
				for j := range rules {
					if rules[j].allows(r, subresource) {
						return "RBAC: allowed by " + b.describe(i), true
					}
				}
			}
		}
		return "", false
	}
	if reason, ok := visit(p.clusterRoleBindings, ""); ok {
		return true, reason, nil
	}
	if r.Namespace != "" {
		if reason, ok := visit(p.roleBindings[r.Namespace], r.Namespace); ok {
			return true, reason, nil
		}
	}
	if len(missing) > 0 {
		return false, "RBAC: " + strings.Join(missing, "; "), nil
	}
	return false, "", nil
}

// effectiveGroups adds system:authenticated as the API server's
// AuthenticatedGroupAdder does.
func effectiveGroups(s Subject) []string {
	if s.User == "" || s.User == anonymousUser ||
		slices.Contains(s.Groups, allAuthenticated) || slices.Contains(s.Groups, allUnauthenticated) {
		return s.Groups
	}
	return append(slices.Clip(s.Groups), allAuthenticated)
}

// appliesTo returns the index of the first of b's subjects that is the user,
// following appliesToUser in k8s.io/kubernetes pkg/registry/rbac/validation.
// namespace is the RoleBinding's namespace, empty for a ClusterRoleBinding.
func (b *binding) appliesTo(user string, groups []string, namespace string) (int, bool) {
	for i, s := range b.subjects {
		switch s.Kind {
		case subjectUser:
			if user == s.Name {
				return i, true
			}
		case subjectGroup:
			if slices.Contains(groups, s.Name) {
				return i, true
			}
		case subjectServiceAccount:
			ns := namespace
			if s.Namespace != "" {
				ns = s.Namespace
			}
			if ns != "" && user == serviceAccountUserPrefix+ns+":"+s.Name {
				return i, true
			}
		}
	}
	return 0, false
}

// roleRefRules returns the rules of the role b refers to, in one or (for
// an aggregated ClusterRole) several sets. A Role is looked up in the
// binding's namespace.
func (p *Policy) roleRefRules(b *binding) ([][]policyRule, error) {
	switch b.roleRef.Kind {
	case kindRole:
		if r, ok := p.roles[nsName{b.namespace, b.roleRef.Name}]; ok {
			return [][]policyRule{r.rules}, nil
		}
		return nil, fmt.Errorf("%s refers to Role %q, which is not in namespace %q of the policy",
			b.String(), b.roleRef.Name, b.namespace)
	case kindClusterRole:
		cr, ok := p.clusterRoles[b.roleRef.Name]
		if !ok {
			return nil, fmt.Errorf("%s refers to ClusterRole %q, which is not in the policy", b.String(), b.roleRef.Name)
		}
		if cr.aggregation == nil {
			return [][]policyRule{cr.rules}, nil
		}
		sets := make([][]policyRule, len(cr.sources))
		for i, src := range cr.sources {
			sets[i] = src.rules
		}
		return sets, nil
	default:
		// Refused when parsing.
		return nil, fmt.Errorf("%s refers to unsupported kind %q", b.String(), b.roleRef.Kind)
	}
}

func (b *binding) String() string {
	if b.kind == kindRoleBinding {
		return fmt.Sprintf("%s %q", b.kind, b.name+"/"+b.namespace)
	}
	return fmt.Sprintf("%s %q", b.kind, b.name)
}

// describe names the binding, its role and the subject that matched, as the
// Kubernetes RBAC authorizer does.
func (b *binding) describe(subject int) string {
	s := b.subjects[subject]
	who := fmt.Sprintf("%s %q", s.Kind, s.Name)
	if s.Kind == subjectServiceAccount {
		ns := s.Namespace
		if ns == "" {
			ns = b.namespace
		}
		who = fmt.Sprintf("%s %q", s.Kind, s.Name+"/"+ns)
	}
	return fmt.Sprintf("%v of %s %q to %s", b, b.roleRef.Kind, b.roleRef.Name, who)
}

// allows follows RuleAllows for resource requests in k8s.io/kubernetes
// plugin/pkg/auth/authorizer/rbac, with the helpers of pkg/apis/rbac/v1.
// r.Resource is the combined "resource/subresource".
func (rule *policyRule) allows(r Request, subresource string) bool {
	return rule.verbMatches(r.Verb) &&
		rule.apiGroupMatches(r.APIGroup) &&
		rule.resourceMatches(r.Resource, subresource) &&
		rule.resourceNameMatches(r.Name)
}

func (rule *policyRule) verbMatches(verb string) bool {
	return slices.Contains(rule.Verbs, "*") || slices.Contains(rule.Verbs, verb)
}

func (rule *policyRule) apiGroupMatches(group string) bool {
	return slices.Contains(rule.APIGroups, "*") || slices.Contains(rule.APIGroups, group)
}

func (rule *policyRule) resourceMatches(combined, subresource string) bool {
	for _, res := range rule.Resources {
		if res == "*" || res == combined {
			return true
		}
		// "*/subresource" matches that subresource of any resource.
		if subresource != "" && res == "*/"+subresource {
			return true
		}
	}
	return false
}

// resourceNameMatches: a rule without resourceNames matches every name; one
// with resourceNames matches only a request for one of them, and never a
// request without a name.
func (rule *policyRule) resourceNameMatches(name string) bool {
	if len(rule.ResourceNames) == 0 {
		return true
	}
	return name != "" && slices.Contains(rule.ResourceNames, name)
}

package rbac

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

const (
	// DefaultNamespace is the traffic manager's namespace unless configured
	// otherwise.
	DefaultNamespace = "tether"
	// ConfigMapName is the configmap whose get and update permissions
	// stand for the right to revoke anyone's intercept.
	ConfigMapName = "traffic-manager"
)

// revokeVerbs are the verbs CanRevoke needs, in the order it reports them.
var revokeVerbs = []string{"get", "update"}

// CanRevoke reports whether s may end anyone's intercept: a checks get AND
// update on the configmap traffic-manager (core API group) in namespace, or
// in DefaultNamespace if namespace is empty.
//
// When refused, reason names exactly the missing permissions, e.g.
//
//	user "bob" may not update configmaps "traffic-manager" in namespace "tether"
//	user "bob" may not get or update configmaps "traffic-manager" in namespace "tether"
//
// followed, in parentheses, by any details the Authorizer gave. When
// allowed, reason is what a gave for allowing (for both verbs, when they
// differ). err reports a failure to decide, never a refusal.
func CanRevoke(ctx context.Context, a Authorizer, s Subject, namespace string) (ok bool, reason string, err error) {
	if a == nil {
		return false, "", errors.New("check revoke permission: no authorizer")
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	var missing, allowReasons, denyReasons []string // allowReasons: one per verb
	for _, verb := range revokeVerbs {
		r := Request{Verb: verb, Resource: "configmaps", Namespace: namespace, Name: ConfigMapName}
		allowed, why, err := a.Authorize(ctx, s, r)
		if err != nil {
			return false, "", fmt.Errorf("check revoke permission: %s configmap %s/%s for user %q: %w",
				verb, namespace, ConfigMapName, s.User, err)
		}
		if allowed {
			allowReasons = append(allowReasons, why)
			continue
		}
		missing = append(missing, verb)
		if why != "" && !slices.Contains(denyReasons, why) {
			denyReasons = append(denyReasons, why)
		}
	}
	if len(missing) > 0 {
		reason := fmt.Sprintf("user %q may not %s configmaps %q in namespace %q",
			s.User, strings.Join(missing, " or "), ConfigMapName, namespace)
		if len(denyReasons) > 0 {
			reason += " (" + strings.Join(denyReasons, "; ") + ")"
		}
		return false, reason, nil
	}
	// Every verb is allowed, most often by the same binding.
	if len(slices.Compact(slices.Clone(allowReasons))) == 1 {
		return true, allowReasons[0], nil
	}
	parts := make([]string, len(revokeVerbs))
	for i, verb := range revokeVerbs {
		parts[i] = verb + ": " + allowReasons[i]
	}
	return true, strings.Join(parts, "; "), nil
}

package rbac

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Builders for policy YAML. Flow lists are passed as YAML, e.g. `[""]`.

func rule(apiGroups, resources, resourceNames, verbs string) string {
	s := fmt.Sprintf("- apiGroups: %s\n  resources: %s\n  verbs: %s\n", apiGroups, resources, verbs)
	if resourceNames != "" {
		s += "  resourceNames: " + resourceNames + "\n"
	}
	return s
}

// getUpdateRule grants get and update on the configmap traffic-manager.
var getUpdateRule = rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `[get, update]`)

func roleDoc(ns, name string, rules ...string) string {
	return fmt.Sprintf("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: %s\n  namespace: %s\nrules:\n%s",
		name, ns, strings.Join(rules, ""))
}

func clusterRoleDoc(name string, rules ...string) string {
	return fmt.Sprintf("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: %s\nrules:\n%s",
		name, strings.Join(rules, ""))
}

func roleBindingDoc(ns, name, refKind, refName string, subjects ...string) string {
	return fmt.Sprintf("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: %s\n  namespace: %s\n"+
		"roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: %s\n  name: %s\nsubjects:\n%s",
		name, ns, refKind, refName, strings.Join(subjects, ""))
}

func clusterRoleBindingDoc(name, refName string, subjects ...string) string {
	return fmt.Sprintf("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: %s\n"+
		"roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: %s\nsubjects:\n%s",
		name, refName, strings.Join(subjects, ""))
}

func userSubject(name string) string {
	return "- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: " + name + "\n"
}

func groupSubject(name string) string {
	return "- kind: Group\n  apiGroup: rbac.authorization.k8s.io\n  name: " + name + "\n"
}

func saSubject(ns, name string) string {
	s := "- kind: ServiceAccount\n  name: " + name + "\n"
	if ns != "" {
		s += "  namespace: " + ns + "\n"
	}
	return s
}

func docs(d ...string) string { return strings.Join(d, "---\n") }

func mustParse(t testing.TB, policy string) *Policy {
	t.Helper()
	p, err := ParsePolicy(strings.NewReader(policy))
	if err != nil {
		t.Fatalf("ParsePolicy: %v\n%s", err, policy)
	}
	return p
}

var (
	alice = Subject{User: "alice"}
	bob   = Subject{User: "bob"}
)

// revokerPolicy is a Role with rules in ns tether, bound to alice there.
func revokerPolicy(rules ...string) string {
	return docs(
		roleDoc("tether", "revoker", rules...),
		roleBindingDoc("tether", "revokers", "Role", "revoker", userSubject("alice")),
	)
}

const (
	allowedByRevokers = `RBAC: allowed by RoleBinding "revokers/tether" of Role "revoker" to User "alice"`
	aliceMayNotUpdate = `user "alice" may not update configmaps "traffic-manager" in namespace "tether"`
	aliceMayNotGet    = `user "alice" may not get configmaps "traffic-manager" in namespace "tether"`
	aliceMayNotEither = `user "alice" may not get or update configmaps "traffic-manager" in namespace "tether"`
)

func TestCanRevoke(t *testing.T) {
	aggregatedPolicy := docs(
		"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: tether-revoke\n"+
			"aggregationRule:\n  clusterRoleSelectors:\n  - matchLabels:\n      tether.dev/aggregate-to-revoke: \"true\"\n"+
			"rules: []\n",
		"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: revoke-get\n"+
			"  labels:\n    tether.dev/aggregate-to-revoke: \"true\"\nrules:\n"+
			rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `[get]`),
		"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: revoke-update\n"+
			"  labels:\n    tether.dev/aggregate-to-revoke: \"true\"\nrules:\n"+
			rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `[update]`),
		clusterRoleBindingDoc("revokers", "tether-revoke", userSubject("alice")),
	)

	tests := []struct {
		name      string
		policy    string
		subject   Subject
		namespace string
		wantOK    bool
		want      string // the exact reason
	}{
		{
			name:    "role binding to role with get and update",
			policy:  revokerPolicy(getUpdateRule),
			subject: alice, namespace: "tether",
			wantOK: true, want: allowedByRevokers,
		},
		{
			name:    "empty namespace means tether",
			policy:  revokerPolicy(getUpdateRule),
			subject: alice, namespace: "",
			wantOK: true, want: allowedByRevokers,
		},
		{
			name:    "role with only get is refused naming update",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `[get]`)),
			subject: alice, namespace: "tether",
			want: aliceMayNotUpdate,
		},
		{
			name:    "role with only update is refused naming get",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `[update]`)),
			subject: alice, namespace: "tether",
			want: aliceMayNotGet,
		},
		{
			name:    "get and update from separate rules",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `[get]`), rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `[update]`)),
			subject: alice, namespace: "tether",
			wantOK: true, want: allowedByRevokers,
		},
		{
			name:    "unbound user is refused naming both",
			policy:  revokerPolicy(getUpdateRule),
			subject: bob, namespace: "tether",
			want: `user "bob" may not get or update configmaps "traffic-manager" in namespace "tether"`,
		},
		{
			name:    "empty policy",
			policy:  "",
			subject: alice, namespace: "tether",
			want: aliceMayNotEither,
		},
		{
			name: "role and binding in another namespace",
			policy: docs(
				roleDoc("other", "revoker", getUpdateRule),
				roleBindingDoc("other", "revokers", "Role", "revoker", userSubject("alice")),
			),
			subject: alice, namespace: "tether",
			want: aliceMayNotEither,
		},
		{
			name: "role and binding in another namespace apply there",
			policy: docs(
				roleDoc("other", "revoker", getUpdateRule),
				roleBindingDoc("other", "revokers", "Role", "revoker", userSubject("alice")),
			),
			subject: alice, namespace: "other",
			wantOK: true, want: `RBAC: allowed by RoleBinding "revokers/other" of Role "revoker" to User "alice"`,
		},
		{
			name: "cluster role bound by role binding in tether",
			policy: docs(
				clusterRoleDoc("revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "ClusterRole", "revoker", userSubject("alice")),
			),
			subject: alice, namespace: "tether",
			wantOK: true, want: `RBAC: allowed by RoleBinding "revokers/tether" of ClusterRole "revoker" to User "alice"`,
		},
		{
			name: "cluster role bound by role binding in tether does not apply elsewhere",
			policy: docs(
				clusterRoleDoc("revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "ClusterRole", "revoker", userSubject("alice")),
			),
			subject: alice, namespace: "staging",
			want: `user "alice" may not get or update configmaps "traffic-manager" in namespace "staging"`,
		},
		{
			name: "cluster role binding applies in tether",
			policy: docs(
				clusterRoleDoc("revoker", getUpdateRule),
				clusterRoleBindingDoc("revokers", "revoker", userSubject("alice")),
			),
			subject: alice, namespace: "tether",
			wantOK: true, want: `RBAC: allowed by ClusterRoleBinding "revokers" of ClusterRole "revoker" to User "alice"`,
		},
		{
			name: "cluster role binding applies everywhere",
			policy: docs(
				clusterRoleDoc("revoker", getUpdateRule),
				clusterRoleBindingDoc("revokers", "revoker", userSubject("alice")),
			),
			subject: alice, namespace: "staging",
			wantOK: true, want: `RBAC: allowed by ClusterRoleBinding "revokers" of ClusterRole "revoker" to User "alice"`,
		},
		{
			name: "get and update from different bindings",
			policy: docs(
				roleDoc("tether", "getter", rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `[get]`)),
				roleBindingDoc("tether", "getters", "Role", "getter", userSubject("alice")),
				clusterRoleDoc("updater", rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `[update]`)),
				clusterRoleBindingDoc("updaters", "updater", userSubject("alice")),
			),
			subject: alice, namespace: "tether",
			wantOK: true,
			want: `get: RBAC: allowed by RoleBinding "getters/tether" of Role "getter" to User "alice"; ` +
				`update: RBAC: allowed by ClusterRoleBinding "updaters" of ClusterRole "updater" to User "alice"`,
		},
		{
			name: "group subject, user in group",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "Role", "revoker", userSubject("alice"), groupSubject("tether-admins")),
			),
			subject: Subject{User: "carol", Groups: []string{"devs", "tether-admins"}}, namespace: "tether",
			wantOK: true, want: `RBAC: allowed by RoleBinding "revokers/tether" of Role "revoker" to Group "tether-admins"`,
		},
		{
			name: "group subject, user not in group",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "Role", "revoker", groupSubject("tether-admins")),
			),
			subject: Subject{User: "carol", Groups: []string{"devs"}}, namespace: "tether",
			want: `user "carol" may not get or update configmaps "traffic-manager" in namespace "tether"`,
		},
		{
			name: "user subject does not match a group of that name",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "Role", "revoker", userSubject("tether-admins")),
			),
			subject: Subject{User: "carol", Groups: []string{"tether-admins"}}, namespace: "tether",
			want: `user "carol" may not get or update configmaps "traffic-manager" in namespace "tether"`,
		},
		{
			name: "implicit group system:authenticated",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "Role", "revoker", groupSubject("system:authenticated")),
			),
			subject: bob, namespace: "tether",
			wantOK: true, want: `RBAC: allowed by RoleBinding "revokers/tether" of Role "revoker" to Group "system:authenticated"`,
		},
		{
			name: "no implicit group system:authenticated without a user name",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "Role", "revoker", groupSubject("system:authenticated")),
			),
			subject: Subject{}, namespace: "tether",
			want: `user "" may not get or update configmaps "traffic-manager" in namespace "tether"`,
		},
		{
			name: "no implicit group system:authenticated for system:anonymous",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "Role", "revoker", groupSubject("system:authenticated")),
			),
			subject: Subject{User: "system:anonymous"}, namespace: "tether",
			want: `user "system:anonymous" may not get or update configmaps "traffic-manager" in namespace "tether"`,
		},
		{
			name:    "verbs wildcard",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `["*"]`)),
			subject: alice, namespace: "tether",
			wantOK: true, want: allowedByRevokers,
		},
		{
			name:    "resources wildcard",
			policy:  revokerPolicy(rule(`[""]`, `["*"]`, ``, `[get, update]`)),
			subject: alice, namespace: "tether",
			wantOK: true, want: allowedByRevokers,
		},
		{
			name:    "apiGroups wildcard",
			policy:  revokerPolicy(rule(`["*"]`, `[configmaps]`, `[traffic-manager]`, `[get, update]`)),
			subject: alice, namespace: "tether",
			wantOK: true, want: allowedByRevokers,
		},
		{
			name:    "all wildcards",
			policy:  revokerPolicy(rule(`["*"]`, `["*"]`, ``, `["*"]`)),
			subject: alice, namespace: "tether",
			wantOK: true, want: allowedByRevokers,
		},
		{
			name:    "no resourceNames means every configmap",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps]`, ``, `[get, update]`)),
			subject: alice, namespace: "tether",
			wantOK: true, want: allowedByRevokers,
		},
		{
			name:    "resourceNames listing another configmap",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps]`, `[other-config]`, `[get, update]`)),
			subject: alice, namespace: "tether",
			want: aliceMayNotEither,
		},
		{
			name:    "resourceNames listing it among others",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps]`, `[other-config, traffic-manager]`, `[get, update]`)),
			subject: alice, namespace: "tether",
			wantOK: true, want: allowedByRevokers,
		},
		{
			name:    "apiGroups apps does not cover core configmaps",
			policy:  revokerPolicy(rule(`[apps]`, `[configmaps]`, `[traffic-manager]`, `[get, update]`)),
			subject: alice, namespace: "tether",
			want: aliceMayNotEither,
		},
		{
			name:    "other resource",
			policy:  revokerPolicy(rule(`[""]`, `[secrets]`, ``, `[get, update]`)),
			subject: alice, namespace: "tether",
			want: aliceMayNotEither,
		},
		{
			name:    "subresource does not cover the resource",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps/status]`, ``, `[get, update]`)),
			subject: alice, namespace: "tether",
			want: aliceMayNotEither,
		},
		{
			name:    "other verbs",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps]`, ``, `[list, watch, patch]`)),
			subject: alice, namespace: "tether",
			want: aliceMayNotEither,
		},
		{
			name:    "missing role",
			policy:  roleBindingDoc("tether", "revokers", "Role", "revoker", userSubject("alice")),
			subject: alice, namespace: "tether",
			want: aliceMayNotEither + ` (RBAC: RoleBinding "revokers/tether" refers to Role "revoker", which is not in namespace "tether" of the policy)`,
		},
		{
			name:    "missing role of a binding that does not apply is not reported",
			policy:  roleBindingDoc("tether", "revokers", "Role", "revoker", userSubject("alice")),
			subject: bob, namespace: "tether",
			want: `user "bob" may not get or update configmaps "traffic-manager" in namespace "tether"`,
		},
		{
			name:    "missing cluster role",
			policy:  clusterRoleBindingDoc("revokers", "revoker", userSubject("alice")),
			subject: alice, namespace: "tether",
			want: aliceMayNotEither + ` (RBAC: ClusterRoleBinding "revokers" refers to ClusterRole "revoker", which is not in the policy)`,
		},
		{
			name: "role of another namespace referenced by a role binding",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("other", "revokers", "Role", "revoker", userSubject("alice")),
			),
			subject: alice, namespace: "tether",
			want: aliceMayNotEither,
		},
		{
			name: "role of another namespace referenced by a role binding, binding's namespace",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("other", "revokers", "Role", "revoker", userSubject("alice")),
			),
			subject: alice, namespace: "other",
			want: `user "alice" may not get or update configmaps "traffic-manager" in namespace "other"` +
				` (RBAC: RoleBinding "revokers/other" refers to Role "revoker", which is not in namespace "other" of the policy)`,
		},
		{
			name: "service account subject",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "Role", "revoker", saSubject("ci", "deployer")),
			),
			subject: Subject{User: "system:serviceaccount:ci:deployer"}, namespace: "tether",
			wantOK: true, want: `RBAC: allowed by RoleBinding "revokers/tether" of Role "revoker" to ServiceAccount "deployer/ci"`,
		},
		{
			name: "service account subject defaults to the binding's namespace",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "Role", "revoker", saSubject("", "deployer")),
			),
			subject: Subject{User: "system:serviceaccount:tether:deployer"}, namespace: "tether",
			wantOK: true, want: `RBAC: allowed by RoleBinding "revokers/tether" of Role "revoker" to ServiceAccount "deployer/tether"`,
		},
		{
			name: "service account of another namespace",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "Role", "revoker", saSubject("", "deployer")),
			),
			subject: Subject{User: "system:serviceaccount:ci:deployer"}, namespace: "tether",
			want: `user "system:serviceaccount:ci:deployer" may not get or update configmaps "traffic-manager" in namespace "tether"`,
		},
		{
			name: "service account subject does not match a user of its bare name",
			policy: docs(
				roleDoc("tether", "revoker", getUpdateRule),
				roleBindingDoc("tether", "revokers", "Role", "revoker", saSubject("tether", "deployer")),
			),
			subject: Subject{User: "deployer"}, namespace: "tether",
			want: `user "deployer" may not get or update configmaps "traffic-manager" in namespace "tether"`,
		},
		{
			name: "service account in a cluster role binding",
			policy: docs(
				clusterRoleDoc("revoker", getUpdateRule),
				clusterRoleBindingDoc("revokers", "revoker", saSubject("ci", "deployer")),
			),
			subject: Subject{User: "system:serviceaccount:ci:deployer"}, namespace: "staging",
			wantOK: true, want: `RBAC: allowed by ClusterRoleBinding "revokers" of ClusterRole "revoker" to ServiceAccount "deployer/ci"`,
		},
		{
			name:    "aggregated cluster role",
			policy:  aggregatedPolicy,
			subject: alice, namespace: "tether",
			wantOK: true, want: `RBAC: allowed by ClusterRoleBinding "revokers" of ClusterRole "tether-revoke" to User "alice"`,
		},
		{
			name: "aggregated cluster role's own rules are replaced",
			policy: docs(
				"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: tether-revoke\n"+
					"aggregationRule:\n  clusterRoleSelectors:\n  - matchLabels:\n      tether.dev/aggregate-to-revoke: \"true\"\n"+
					"rules:\n"+getUpdateRule,
				clusterRoleBindingDoc("revokers", "tether-revoke", userSubject("alice")),
			),
			subject: alice, namespace: "tether",
			want: aliceMayNotEither,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.policy)
			ok, reason, err := CanRevoke(t.Context(), p, tt.subject, tt.namespace)
			if err != nil {
				t.Fatalf("CanRevoke: %v", err)
			}
			if ok != tt.wantOK || reason != tt.want {
				t.Errorf("CanRevoke = %v, %q\nwant        %v, %q", ok, reason, tt.wantOK, tt.want)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	cm := func(verb, ns, name string) Request {
		return Request{Verb: verb, Resource: "configmaps", Namespace: ns, Name: name}
	}
	tests := []struct {
		name    string
		policy  string
		subject Subject
		req     Request
		wantOK  bool
	}{
		{
			name:    "resourceNames never match a request without a name",
			policy:  revokerPolicy(getUpdateRule),
			subject: alice, req: cm("get", "tether", ""),
		},
		{
			name:    "degenerate resourceNames [\"\"] do not match a request without a name",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps]`, `[""]`, `[list]`)),
			subject: alice, req: cm("list", "tether", ""),
		},
		{
			name:    "no resourceNames match a request without a name",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps]`, ``, `[list]`)),
			subject: alice, req: cm("list", "tether", ""), wantOK: true,
		},
		{
			name:    "subresource rule matches the subresource",
			policy:  revokerPolicy(rule(`[""]`, `[pods/log]`, ``, `[get]`)),
			subject: alice, req: Request{Verb: "get", Resource: "pods/log", Namespace: "tether", Name: "p"}, wantOK: true,
		},
		{
			name:    "resource rule does not match a subresource",
			policy:  revokerPolicy(rule(`[""]`, `[pods]`, ``, `[get]`)),
			subject: alice, req: Request{Verb: "get", Resource: "pods/log", Namespace: "tether", Name: "p"},
		},
		{
			name:    "star slash subresource matches that subresource of any resource",
			policy:  revokerPolicy(rule(`[""]`, `["*/status"]`, ``, `[get]`)),
			subject: alice, req: Request{Verb: "get", Resource: "configmaps/status", Namespace: "tether"}, wantOK: true,
		},
		{
			name:    "star slash subresource does not match the resource",
			policy:  revokerPolicy(rule(`[""]`, `["*/status"]`, ``, `[get]`)),
			subject: alice, req: cm("get", "tether", "traffic-manager"),
		},
		{
			name:    "star slash subresource does not match another subresource",
			policy:  revokerPolicy(rule(`[""]`, `["*/status"]`, ``, `[get]`)),
			subject: alice, req: Request{Verb: "get", Resource: "pods/log", Namespace: "tether"},
		},
		{
			name:    "apps group",
			policy:  revokerPolicy(rule(`[apps]`, `[deployments]`, ``, `[get]`)),
			subject: alice, req: Request{Verb: "get", APIGroup: "apps", Resource: "deployments", Namespace: "tether", Name: "d"},
			wantOK: true,
		},
		{
			name:    "role bindings do not grant cluster-scoped requests",
			policy:  revokerPolicy(rule(`["*"]`, `["*"]`, ``, `["*"]`)),
			subject: alice, req: Request{Verb: "get", Resource: "namespaces", Name: "tether"},
		},
		{
			name: "cluster role bindings grant cluster-scoped requests",
			policy: docs(
				clusterRoleDoc("reader", rule(`[""]`, `[namespaces]`, ``, `[get]`)),
				clusterRoleBindingDoc("readers", "reader", userSubject("alice")),
			),
			subject: alice, req: Request{Verb: "get", Resource: "namespaces", Name: "tether"}, wantOK: true,
		},
		{
			name: "non-resource URL rules never match",
			policy: docs(
				"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: urls\nrules:\n"+
					"- nonResourceURLs: [\"*\"]\n  verbs: [\"*\"]\n",
				clusterRoleBindingDoc("urls", "urls", userSubject("alice")),
			),
			subject: alice, req: cm("get", "tether", "traffic-manager"),
		},
		{
			name:    "verbs are case-sensitive",
			policy:  revokerPolicy(rule(`[""]`, `[configmaps]`, ``, `[GET]`)),
			subject: alice, req: cm("get", "tether", "traffic-manager"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.policy)
			ok, reason, err := p.Authorize(t.Context(), tt.subject, tt.req)
			if err != nil {
				t.Fatalf("Authorize: %v", err)
			}
			if ok != tt.wantOK {
				t.Errorf("Authorize(%+v) = %v (%q), want %v", tt.req, ok, reason, tt.wantOK)
			}
			if ok && !strings.HasPrefix(reason, "RBAC: allowed by ") {
				t.Errorf("reason %q does not name what allowed it", reason)
			}
		})
	}
}

func TestAuthorizeErrors(t *testing.T) {
	p := mustParse(t, revokerPolicy(getUpdateRule))
	req := Request{Verb: "get", Resource: "configmaps", Namespace: "tether", Name: "traffic-manager"}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := p.Authorize(ctx, alice, req); !errors.Is(err, context.Canceled) {
		t.Errorf("Authorize with canceled context: err = %v, want context.Canceled", err)
	}
	if _, _, err := p.Authorize(t.Context(), alice, Request{Resource: "configmaps"}); err == nil {
		t.Error("Authorize without a verb: no error")
	}
	if _, _, err := p.Authorize(t.Context(), alice, Request{Verb: "get"}); err == nil {
		t.Error("Authorize without a resource: no error")
	}
	var nilPolicy *Policy
	if ok, _, err := nilPolicy.Authorize(t.Context(), alice, req); ok || err != nil {
		t.Errorf("nil Policy: Authorize = %v, %v; want false, nil", ok, err)
	}
	if ok, _, err := CanRevoke(ctx, p, alice, "tether"); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("CanRevoke with canceled context = %v, %v; want false, context.Canceled", ok, err)
	}
	if _, _, err := CanRevoke(t.Context(), nil, alice, "tether"); err == nil {
		t.Error("CanRevoke without an authorizer: no error")
	}
}

// authorizerFunc lets a test stand in for an in-cluster authorizer.
type authorizerFunc func(Request) (bool, string, error)

func (f authorizerFunc) Authorize(_ context.Context, _ Subject, r Request) (bool, string, error) {
	return f(r)
}

func TestCanRevokeAsksForGetAndUpdate(t *testing.T) {
	var asked []Request
	a := authorizerFunc(func(r Request) (bool, string, error) {
		asked = append(asked, r)
		return r.Verb == "get", "", nil
	})
	ok, reason, err := CanRevoke(t.Context(), a, bob, "tm")
	if err != nil || ok {
		t.Fatalf("CanRevoke = %v, %q, %v; want refused", ok, reason, err)
	}
	if want := `user "bob" may not update configmaps "traffic-manager" in namespace "tm"`; reason != want {
		t.Errorf("reason = %q, want %q", reason, want)
	}
	want := []Request{
		{Verb: "get", Resource: "configmaps", Namespace: "tm", Name: "traffic-manager"},
		{Verb: "update", Resource: "configmaps", Namespace: "tm", Name: "traffic-manager"},
	}
	if fmt.Sprint(asked) != fmt.Sprint(want) {
		t.Errorf("asked %+v, want %+v", asked, want)
	}

	boom := errors.New("apiserver unreachable")
	a = authorizerFunc(func(Request) (bool, string, error) { return false, "", boom })
	if ok, _, err := CanRevoke(t.Context(), a, bob, "tm"); ok || !errors.Is(err, boom) {
		t.Errorf("CanRevoke with failing authorizer = %v, %v; want false, %v", ok, err, boom)
	}
}

func TestExamplePolicy(t *testing.T) {
	p, err := LoadPolicy("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		subject Subject
		ns      string
		wantOK  bool
		want    string
	}{
		{"alice", alice, "tether", true,
			`RBAC: allowed by RoleBinding "tether-revokers/tether" of Role "tether-revoker" to User "alice"`},
		{"group tether-admins", Subject{User: "dave", Groups: []string{"tether-admins"}}, "tether", true,
			`RBAC: allowed by RoleBinding "tether-revokers/tether" of Role "tether-revoker" to Group "tether-admins"`},
		{"bob", bob, "tether", false,
			`user "bob" may not get or update configmaps "traffic-manager" in namespace "tether"`},
		{"alice in another namespace", alice, "default", false,
			`user "alice" may not get or update configmaps "traffic-manager" in namespace "default"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason, err := CanRevoke(t.Context(), p, tt.subject, tt.ns)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK || reason != tt.want {
				t.Errorf("CanRevoke = %v, %q; want %v, %q", ok, reason, tt.wantOK, tt.want)
			}
		})
	}
}

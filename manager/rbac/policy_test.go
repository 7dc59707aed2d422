package rbac

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePolicyErrors(t *testing.T) {
	role := roleDoc("tether", "revoker", getUpdateRule)
	binding := roleBindingDoc("tether", "revokers", "Role", "revoker", userSubject("alice"))
	tests := []struct {
		name   string
		policy string
		want   string // a substring of the error
	}{
		{
			name:   "bad YAML in the second document",
			policy: docs(role, "kind: Role\nmetadata: [unclosed\n"),
			want:   "parse RBAC policy: document 2: yaml: line ",
		},
		{
			name:   "bad indentation",
			policy: docs(role, binding, "kind: Role\n\tmetadata: {}\n"),
			want:   "document 3: yaml: line ",
		},
		{
			name:   "unknown kind",
			policy: docs(role, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n"),
			want:   `document 2: unknown kind "Deployment" (apiVersion "apps/v1"), want Role, ClusterRole, RoleBinding, ClusterRoleBinding or List`,
		},
		{
			name:   "empty documents count",
			policy: "# comment\n---\n---\n# comment\n---\n" + role + "---\napiVersion: v1\nkind: Secret\n",
			want:   `document 4: unknown kind "Secret" (apiVersion "v1")`,
		},
		{
			name:   "missing kind",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nmetadata:\n  name: x\n",
			want:   "document 1: kind is missing",
		},
		{
			name:   "unknown field",
			policy: docs(role, binding, "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: x, namespace: y}\nspec: {}\n"),
			want:   "document 3: yaml: line 29: unknown field spec",
		},
		{
			name: "misspelt resourceNames",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: x, namespace: y}\nrules:\n" +
				"- apiGroups: [\"\"]\n  resources: [configmaps]\n  resourceName: [traffic-manager]\n  verbs: [get]\n",
			want: "document 1: yaml: line 7: unknown field resourceName",
		},
		{
			name:   "scalar document",
			policy: docs(role, "hello\n"),
			want:   "document 2: yaml: line ",
		},
		{
			name: "missing roleRef kind",
			policy: docs(role, "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: revokers, namespace: tether}\n"+
				"roleRef: {apiGroup: rbac.authorization.k8s.io, name: revoker}\nsubjects:\n"+userSubject("alice")),
			want: `document 2 (RoleBinding "tether/revokers"): roleRef.kind is required, want Role or ClusterRole`,
		},
		{
			name: "missing roleRef",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: revokers}\n" +
				"subjects:\n" + userSubject("alice"),
			want: `document 1 (ClusterRoleBinding "revokers"): roleRef is required`,
		},
		{
			name: "missing roleRef name",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: revokers}\n" +
				"roleRef: {kind: ClusterRole}\n",
			want: `document 1 (ClusterRoleBinding "revokers"): roleRef.name is required`,
		},
		{
			name: "cluster role binding to a role",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: revokers}\n" +
				"roleRef: {kind: Role, name: revoker}\n",
			want: `roleRef.kind is "Role"; a ClusterRoleBinding can refer only to a ClusterRole`,
		},
		{
			name: "roleRef of another kind",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: tether}\n" +
				"roleRef: {kind: ServiceAccount, name: revoker}\n",
			want: `roleRef.kind is "ServiceAccount", want Role or ClusterRole`,
		},
		{
			name: "roleRef of another API group",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b, namespace: tether}\n" +
				"roleRef: {apiGroup: example.com, kind: Role, name: revoker}\n",
			want: `roleRef.apiGroup is "example.com", want "rbac.authorization.k8s.io"`,
		},
		{
			name:   "old API version",
			policy: strings.Replace(role, "rbac.authorization.k8s.io/v1", "rbac.authorization.k8s.io/v1beta1", 1),
			want:   `document 1 (Role "tether/revoker"): apiVersion is "rbac.authorization.k8s.io/v1beta1", want "rbac.authorization.k8s.io/v1"`,
		},
		{
			name:   "role without namespace",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: revoker}\nrules:\n" + getUpdateRule,
			want:   `document 1 (Role "revoker"): metadata.namespace is required for a Role`,
		},
		{
			name:   "role without name",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {namespace: tether}\nrules:\n" + getUpdateRule,
			want:   `document 1 (Role): metadata.name is required`,
		},
		{
			name:   "name with slash",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: a/b}\n",
			want:   `metadata.name "a/b" may not contain '/' or '%'`,
		},
		{
			name:   "duplicate role",
			policy: docs(role, clusterRoleDoc("revoker"), role),
			want:   `document 3: Role "tether/revoker" is already defined in document 1`,
		},
		{
			name:   "rule without verbs",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n",
			want:   `document 1 (ClusterRole "r"): rules[0].verbs must contain at least one value`,
		},
		{
			name:   "rule without apiGroups and resources",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\nrules:\n- verbs: [get]\n",
			want:   `rules[0].apiGroups must contain at least one value ("" is the core group); rules[0].resources must contain at least one value`,
		},
		{
			name:   "resourceNames for several resources",
			policy: revokerPolicy(rule(`[""]`, `[configmaps, secrets]`, `[traffic-manager]`, `[get]`)),
			want:   `rules[0].resourceNames cannot apply to more than one resource`,
		},
		{
			name:   "nonResourceURLs in a role",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: n}\nrules:\n- nonResourceURLs: [/healthz]\n  verbs: [get]\n",
			want:   `rules[0].nonResourceURLs are not allowed in a Role`,
		},
		{
			name:   "subject without kind",
			policy: roleBindingDoc("tether", "b", "Role", "r", "- name: alice\n"),
			want:   `document 1 (RoleBinding "tether/b"): subjects[0].kind is required, want User, Group or ServiceAccount`,
		},
		{
			name:   "subject of unknown kind",
			policy: roleBindingDoc("tether", "b", "Role", "r", "- kind: Team\n  name: alice\n"),
			want:   `subjects[0].kind is "Team", want User, Group or ServiceAccount`,
		},
		{
			name:   "user subject without name",
			policy: roleBindingDoc("tether", "b", "Role", "r", userSubject("alice"), "- kind: User\n"),
			want:   `subjects[1].name is required`,
		},
		{
			name:   "service account in a cluster role binding without namespace",
			policy: clusterRoleBindingDoc("b", "r", saSubject("", "deployer")),
			want:   `subjects[0].namespace is required for a ServiceAccount in a ClusterRoleBinding`,
		},
		{
			name:   "rules in a binding",
			policy: roleBindingDoc("tether", "b", "Role", "r", userSubject("alice")) + "rules:\n" + getUpdateRule,
			want:   `document 1 (RoleBinding "tether/b"): a RoleBinding has no rules, aggregationRule or items`,
		},
		{
			name: "bad selector operator",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: agg}\naggregationRule:\n" +
				"  clusterRoleSelectors:\n  - matchExpressions:\n    - {key: a, operator: Equals, values: [b]}\n",
			want: `aggregationRule.clusterRoleSelectors[0].matchExpressions[0].operator "Equals" is not one of In, NotIn, Exists, DoesNotExist`,
		},
		{
			name: "list item of unknown kind",
			policy: "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(strings.TrimSuffix(role, "\n"), "\n", "\n  ") +
				"\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: traffic-manager}\n",
			want: `document 1, item 2: unknown kind "ConfigMap" (apiVersion "v1")`,
		},
		{
			name:   "list inside a list",
			policy: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n",
			want:   `document 1, item 1: a List inside a List is not supported`,
		},
		{
			name:   "list of another apiVersion",
			policy: "apiVersion: rbac.authorization.k8s.io/v1\nkind: List\nitems: []\n",
			want:   `document 1: List has apiVersion "rbac.authorization.k8s.io/v1", want "v1"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePolicy(strings.NewReader(tt.policy))
			if err == nil {
				t.Fatalf("ParsePolicy: no error, want %q\n%s", tt.want, tt.policy)
			}
			if p != nil {
				t.Errorf("ParsePolicy returned a policy with error %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParsePolicy error:\n%v\nwant it to contain\n%s", err, tt.want)
			}
		})
	}
}

func TestLoadPolicyErrorsNameFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	bad := docs(roleDoc("tether", "revoker", getUpdateRule), "apiVersion: apps/v1\nkind: Deployment\n")
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPolicy(path)
	want := "load RBAC policy " + path + `: document 2: unknown kind "Deployment"`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("LoadPolicy error = %v, want prefix %q", err, want)
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, err = LoadPolicy(missing)
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadPolicy of a missing file: error = %v, want one naming %s that wraps fs.ErrNotExist", err, missing)
	}
}

func TestParsePolicyForms(t *testing.T) {
	canRevoke := func(t *testing.T, p *Policy, s Subject) bool {
		t.Helper()
		ok, _, err := CanRevoke(t.Context(), p, s, "tether")
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	indent := func(doc string) string {
		return "- " + strings.ReplaceAll(strings.TrimSuffix(doc, "\n"), "\n", "\n  ") + "\n"
	}

	t.Run("list", func(t *testing.T) {
		p := mustParse(t, "apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n"+
			indent(roleDoc("tether", "revoker", getUpdateRule))+
			indent(roleBindingDoc("tether", "revokers", "Role", "revoker", userSubject("alice"))))
		if !canRevoke(t, p, alice) {
			t.Error("alice may not revoke")
		}
	})

	t.Run("empty documents and comments", func(t *testing.T) {
		p := mustParse(t, "# leading comment\n---\n---\n# only a comment\n---\n"+revokerPolicy(getUpdateRule)+"---\n")
		if !canRevoke(t, p, alice) {
			t.Error("alice may not revoke")
		}
	})

	t.Run("empty input", func(t *testing.T) {
		p := mustParse(t, "")
		if canRevoke(t, p, alice) {
			t.Error("alice may revoke with an empty policy")
		}
	})

	t.Run("kubectl export", func(t *testing.T) {
		// As `kubectl get role,rolebinding -o yaml` writes them; the subject and
		// roleRef apiGroups are left out, to be defaulted.
		p := mustParse(t, `apiVersion: v1
kind: List
metadata:
  resourceVersion: ""
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role"}
    creationTimestamp: 2025-01-02T03:04:05Z
    name: revoker
    namespace: tether
    resourceVersion: "1234"
    uid: 0b9c5f7e-5f0a-4d3e-9a53-6c4d1e2f3a4b
    managedFields:
    - apiVersion: rbac.authorization.k8s.io/v1
      fieldsType: FieldsV1
      manager: kubectl-client-side-apply
      operation: Update
  rules:
  - apiGroups:
    - ""
    resourceNames:
    - traffic-manager
    resources:
    - configmaps
    verbs:
    - get
    - update
- apiVersion: rbac.authorization.k8s.io/v1
  kind: RoleBinding
  metadata:
    creationTimestamp: null
    generation: 1
    name: revokers
    namespace: tether
    labels:
      app: tether
  roleRef:
    kind: Role
    name: revoker
  subjects:
  - kind: User
    name: alice
  - kind: ServiceAccount
    name: deployer
    namespace: ci
`)
		if !canRevoke(t, p, alice) {
			t.Error("alice may not revoke")
		}
		if !canRevoke(t, p, Subject{User: "system:serviceaccount:ci:deployer"}) {
			t.Error("service account ci/deployer may not revoke")
		}
	})

	t.Run("cluster-scoped objects ignore metadata.namespace", func(t *testing.T) {
		p := mustParse(t, docs(
			strings.Replace(clusterRoleDoc("revoker", getUpdateRule), "  name: revoker\n", "  name: revoker\n  namespace: other\n", 1),
			strings.Replace(clusterRoleBindingDoc("revokers", "revoker", userSubject("alice")), "  name: revokers\n", "  name: revokers\n  namespace: other\n", 1),
		))
		if !canRevoke(t, p, alice) {
			t.Error("alice may not revoke")
		}
	})
}

func TestAggregation(t *testing.T) {
	aggregated := func(name string, labels, selectors string) string {
		s := "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: " + name + "\n"
		if labels != "" {
			s += "  labels: " + labels + "\n"
		}
		return s + "aggregationRule:\n  clusterRoleSelectors: " + selectors + "\n"
	}
	labelled := func(name, labels string, rules ...string) string {
		return strings.Replace(clusterRoleDoc(name, rules...), "  name: "+name+"\n", "  name: "+name+"\n  labels: "+labels+"\n", 1)
	}
	get := rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `[get]`)
	update := rule(`[""]`, `[configmaps]`, `[traffic-manager]`, `[update]`)
	bind := clusterRoleBindingDoc("revokers", "top", userSubject("alice"))

	tests := []struct {
		name   string
		policy string
		wantOK bool
	}{
		{
			name: "match expressions",
			policy: docs(bind,
				aggregated("top", "", `[{matchExpressions: [{key: tier, operator: In, values: [revoke, admin]}, {key: deprecated, operator: DoesNotExist}]}]`),
				labelled("a", "{tier: revoke}", get),
				labelled("b", "{tier: admin}", update),
				labelled("c", "{tier: admin, deprecated: \"yes\"}", getUpdateRule),
			),
			wantOK: true,
		},
		{
			name: "expression excludes a role",
			policy: docs(bind,
				aggregated("top", "", `[{matchExpressions: [{key: tier, operator: NotIn, values: [admin]}, {key: tier, operator: Exists}]}]`),
				labelled("a", "{tier: revoke}", get),
				labelled("b", "{tier: admin}", update),
			),
		},
		{
			name: "selectors are ORed",
			policy: docs(bind,
				aggregated("top", "", `[{matchLabels: {x: "1"}}, {matchLabels: {y: "1"}}]`),
				labelled("a", `{x: "1"}`, get),
				labelled("b", `{y: "1"}`, update),
			),
			wantOK: true,
		},
		{
			name: "chain of aggregated roles",
			policy: docs(bind,
				aggregated("top", "", `[{matchLabels: {level: mid}}]`),
				aggregated("mid", "{level: mid}", `[{matchLabels: {level: leaf}}]`),
				labelled("leaf", "{level: leaf}", getUpdateRule),
			),
			wantOK: true,
		},
		{
			name: "cycle of aggregated roles gets the rules around it",
			policy: docs(bind,
				aggregated("top", "{ring: \"1\"}", `[{matchLabels: {ring: "1"}}]`),
				aggregated("other", "{ring: \"1\"}", `[{matchLabels: {ring: "1"}}]`),
				labelled("leaf", `{ring: "1"}`, getUpdateRule),
			),
			wantOK: true,
		},
		{
			name: "cycle of aggregated roles alone grants nothing",
			policy: docs(bind,
				aggregated("top", "{ring: \"1\"}", `[{matchLabels: {ring: "1"}}]`)+"rules:\n"+getUpdateRule,
				aggregated("other", "{ring: \"1\"}", `[{matchLabels: {ring: "1"}}]`)+"rules:\n"+getUpdateRule,
			),
		},
		{
			name: "empty selector matches every other cluster role",
			policy: docs(bind,
				aggregated("top", "", `[{}]`),
				clusterRoleDoc("anything", getUpdateRule),
			),
			wantOK: true,
		},
		{
			name: "no selectors aggregate nothing",
			policy: docs(bind,
				aggregated("top", "", `[]`),
				clusterRoleDoc("anything", getUpdateRule),
			),
		},
		{
			name: "roles are not aggregated",
			policy: docs(bind,
				aggregated("top", "", `[{}]`),
				roleDoc("tether", "role", getUpdateRule),
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.policy)
			ok, reason, err := CanRevoke(t.Context(), p, alice, "tether")
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK {
				t.Errorf("CanRevoke = %v (%q), want %v", ok, reason, tt.wantOK)
			}
		})
	}
}

func FuzzParsePolicy(f *testing.F) {
	example, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(""))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte(revokerPolicy(getUpdateRule)))
	f.Add([]byte(docs(
		clusterRoleDoc("revoker", rule(`["*"]`, `["*/status"]`, ``, `["*"]`)),
		clusterRoleBindingDoc("revokers", "revoker", saSubject("ci", "deployer"), groupSubject("g")),
		roleBindingDoc("tether", "b", "ClusterRole", "revoker", saSubject("", "x")),
	)))
	f.Add([]byte("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: top, labels: {a: b}}\n" +
		"aggregationRule: {clusterRoleSelectors: [{matchLabels: {a: b}}, {matchExpressions: [{key: a, operator: NotIn, values: [c]}]}]}\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: rbac.authorization.k8s.io/v1, kind: Role, metadata: {name: r, namespace: n}}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))

	subjects := []Subject{
		{User: "alice"},
		{User: "carol", Groups: []string{"g", "tether-admins"}},
		{User: "system:serviceaccount:ci:deployer"},
		{},
	}
	requests := []Request{
		{Verb: "get", Resource: "configmaps", Namespace: "tether", Name: "traffic-manager"},
		{Verb: "list", Resource: "configmaps/status", Namespace: "n"},
		{Verb: "get", Resource: "namespaces"},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(bytes.NewReader(data))
		if (p == nil) == (err == nil) {
			t.Fatalf("ParsePolicy = %v, %v: want exactly one of policy and error", p, err)
		}
		if err != nil {
			return
		}
		for _, s := range subjects {
			if _, _, err := CanRevoke(t.Context(), p, s, "tether"); err != nil {
				t.Fatalf("CanRevoke: %v", err)
			}
			for _, r := range requests {
				ok, reason, err := p.Authorize(t.Context(), s, r)
				if err != nil {
					t.Fatalf("Authorize: %v", err)
				}
				if ok && reason == "" {
					t.Fatal("allowed without a reason")
				}
			}
		}
	})
}

// largeAggregatedPolicy has n aggregated ClusterRoles that all select each
// other and n plain ClusterRoles of 20 rules each. Copying rules into
// aggregated roles would take n*n*20 rules; a binding to c0 reaches all.
func largeAggregatedPolicy(n int) string {
	var d []string
	for i := range n {
		var rules []string
		for j := range 20 {
			rules = append(rules, rule(`[""]`, fmt.Sprintf("[r%d]", j), ``, fmt.Sprintf("[v%d]", i)))
		}
		d = append(d,
			fmt.Sprintf("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: c%d, labels: {a: b}}\n"+
				"aggregationRule: {clusterRoleSelectors: [{matchLabels: {a: b}}]}\n", i),
			fmt.Sprintf("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: p%d, labels: {a: b}}\nrules:\n%s",
				i, strings.Join(rules, "")),
		)
	}
	d = append(d, clusterRoleBindingDoc("all", "c0", userSubject("alice")))
	return docs(d...)
}

func TestLargeAggregation(t *testing.T) {
	const n = 300
	p := mustParse(t, largeAggregatedPolicy(n))
	last := Request{Verb: fmt.Sprintf("v%d", n-1), Resource: "r19", Namespace: "tether"}
	if ok, reason, err := p.Authorize(t.Context(), alice, last); !ok || err != nil {
		t.Errorf("Authorize(%+v) = %v, %q, %v; want allowed", last, ok, reason, err)
	}
	none := Request{Verb: fmt.Sprintf("v%d", n), Resource: "r0", Namespace: "tether"}
	if ok, reason, err := p.Authorize(t.Context(), alice, none); ok || err != nil {
		t.Errorf("Authorize(%+v) = %v, %q, %v; want denied", none, ok, reason, err)
	}
}

func BenchmarkParseLargeAggregation(b *testing.B) {
	policy := largeAggregatedPolicy(300)
	for b.Loop() {
		if _, err := ParsePolicy(strings.NewReader(policy)); err != nil {
			b.Fatal(err)
		}
	}
}

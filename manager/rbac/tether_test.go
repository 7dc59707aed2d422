package rbac

import (
	"errors"
	"testing"
)

func TestTetherPermissions(t *testing.T) {
	policy := mustParse(t, docs(
		roleDoc("default", "web-agent", rule(`[tether.dev]`, `[workloads]`, `[web]`, `[serve]`)),
		roleBindingDoc("default", "web-agents", "Role", "web-agent", userSubject("agent-web")),
		clusterRoleDoc("interceptor", rule(`[tether.dev]`, `[intercepts]`, "", `[create]`)),
		roleBindingDoc("default", "devs", "ClusterRole", "interceptor", groupSubject("devs")),
		clusterRoleDoc("named-interceptor", rule(`[tether.dev]`, `[intercepts]`, `[web]`, `[create]`)),
		roleBindingDoc("staging", "named", "ClusterRole", "named-interceptor", userSubject("bob")),
	))
	agent := Subject{User: "agent-web", Groups: []string{"tether:agents"}}
	dev := Subject{User: "alice", Groups: []string{"devs"}}
	for _, tc := range []struct {
		name    string
		subject Subject
		r       Request
		wantOK  bool
		want    string
	}{
		{"agent serves its workload", agent, ServeRequest("default/web"), true,
			`RBAC: allowed by RoleBinding "web-agents/default" of Role "web-agent" to User "agent-web"`},
		{"agent may not serve another workload", agent, ServeRequest("default/db"), false,
			`user "agent-web" may not serve workloads.tether.dev "db" in namespace "default"`},
		{"agent may not serve its workload's name elsewhere", agent, ServeRequest("prod/web"), false,
			`user "agent-web" may not serve workloads.tether.dev "web" in namespace "prod"`},
		{"a developer is not bound to serve", dev, ServeRequest("default/web"), false,
			`user "alice" may not serve workloads.tether.dev "web" in namespace "default"`},
		{"developer creates intercepts in a namespace", dev, CreateInterceptRequest("default"), true,
			`RBAC: allowed by RoleBinding "devs/default" of ClusterRole "interceptor" to Group "devs"`},
		{"not in another namespace", dev, CreateInterceptRequest("prod"), false,
			`user "alice" may not create intercepts.tether.dev in namespace "prod"`},
		{"resourceNames never grant create", bob, CreateInterceptRequest("staging"), false,
			`user "bob" may not create intercepts.tether.dev in namespace "staging"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason, err := Check(t.Context(), policy, tc.subject, tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.wantOK || reason != tc.want {
				t.Errorf("Check = %v, %q; want %v, %q", ok, reason, tc.wantOK, tc.want)
			}
		})
	}
}

func TestCheckPassesAuthorizerDetailsAndErrors(t *testing.T) {
	a := authorizerFunc(func(Request) (bool, string, error) { return false, "RBAC: binding x refers to a missing role", nil })
	_, reason, _ := Check(t.Context(), a, bob, ServeRequest("default/web"))
	if want := `user "bob" may not serve workloads.tether.dev "web" in namespace "default" (RBAC: binding x refers to a missing role)`; reason != want {
		t.Errorf("reason = %q, want %q", reason, want)
	}
	boom := errors.New("apiserver unreachable")
	a = authorizerFunc(func(Request) (bool, string, error) { return false, "", boom })
	if ok, _, err := Check(t.Context(), a, bob, CreateInterceptRequest("default")); ok || !errors.Is(err, boom) {
		t.Errorf("Check with a failing authorizer = %v, %v; want false, %v", ok, err, boom)
	}
}

package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/manager/rbac"
	pb "github.com/tether-dev/tether/rpc/manager"
)

// memWorkloads is an in-memory Workloads: its workloads by key, and the
// error Resolve gives for a key (ErrNoWorkload when absent).
type memWorkloads struct {
	ws   map[string]Workload
	errs map[string]error
}

func (m memWorkloads) Resolve(_ context.Context, ns, name string) (Workload, error) {
	key := ns + "/" + name
	if err := m.errs[key]; err != nil {
		return Workload{}, err
	}
	w, ok := m.ws[key]
	if !ok {
		return Workload{}, &WorkloadError{Kind: ErrNoWorkload, Msg: fmt.Sprintf("no deployment, statefulset or replicaset %s in %s", name, ns)}
	}
	return w, nil
}

func (m memWorkloads) List(_ context.Context, ns string) ([]Workload, error) {
	var out []Workload
	for _, w := range m.ws {
		if w.Namespace == ns {
			out = append(out, w)
		}
	}
	return out, nil
}

var shopWorkloads = memWorkloads{
	ws: map[string]Workload{
		"shop/web": {WorkloadRef: WorkloadRef{Namespace: "shop", Name: "web", Kind: "Deployment"}, Ports: []WorkloadPort{
			{Port: 8080, Name: "http", Container: "app", Services: []string{"web"}, Via: []ServicePort{{"web", 80}}},
			{Port: 9100, Container: "app", Services: []string{"metrics"}, Via: []ServicePort{{"metrics", 9100}}},
		}},
		"shop/db":    {WorkloadRef: WorkloadRef{Namespace: "shop", Name: "db", Kind: "StatefulSet"}},
		"other/idle": {WorkloadRef: WorkloadRef{Namespace: "other", Name: "idle", Kind: "ReplicaSet"}},
	},
	errs: map[string]error{
		"shop/web-5d9f":  &WorkloadError{Kind: ErrNotInterceptable, Msg: "replicaset web-5d9f in shop is owned by deployment web: intercept web"},
		"shop/flaky-api": errors.New("connection refused"),
	},
}

// TestCreateInterceptChecksWorkload: with Workloads, an intercept of an
// unknown workload, or of a port no Service targets, is refused before
// anything changes, saying what exists.
func TestCreateInterceptChecksWorkload(t *testing.T) {
	for _, tc := range []struct {
		name     string
		workload string
		port     uint32
		ports    []uint32 // replace
		code     codes.Code
		want     string
	}{
		{"known workload and port", "shop/web", 8080, nil, codes.OK, ""},
		{"second port", "shop/web", 9100, nil, codes.OK, ""},
		{"unknown workload", "shop/nope", 8080, nil, codes.NotFound, "no deployment, statefulset or replicaset nope in shop"},
		{"port no Service targets", "shop/web", 9090, nil, codes.InvalidArgument,
			"deployment web in shop has no Service port 9090; its Services expose 8080 (web:80→http), 9100 (metrics:9100→9100)"},
		{"a Service's own port", "shop/web", 80, nil, codes.InvalidArgument,
			"Service web's port 80 targets container port 8080: give --port 8080"},
		{"replace port no Service targets", "shop/web", 0, []uint32{8080, 7000}, codes.InvalidArgument, "has no Service port 7000"},
		{"no Service at all", "shop/db", 5432, nil, codes.FailedPrecondition,
			"statefulset db in shop has no port that a Service targets"},
		{"replicaset of a deployment", "shop/web-5d9f", 8080, nil, codes.FailedPrecondition, "is owned by deployment web: intercept web"},
		{"API server unreachable", "shop/flaky-api", 8080, nil, codes.Unavailable, "finding workload shop/flaky-api: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startGRPC(t, Config{Authenticator: testTokens, Workloads: shopWorkloads})
			l := &grpcLab{s: m.s, c: m.client}
			alice := l.arrive(t, "alice")
			spec := &pb.InterceptSpec{Name: "x", Workload: tc.workload, Port: tc.port, Kind: pb.InterceptKind_GLOBAL}
			if tc.ports != nil {
				spec.Kind, spec.Ports = pb.InterceptKind_REPLACE, tc.ports
			}
			_, err := l.c.CreateIntercept(alice, &pb.CreateInterceptRequest{Spec: spec})
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("CreateIntercept = %v, want %v containing %q", err, tc.code, tc.want)
			}
			l.s.mu.Lock()
			n := len(l.s.intercepts)
			l.s.mu.Unlock()
			if created := tc.code == codes.OK; (n == 1) != created {
				t.Fatalf("%d intercepts after the call, want created=%v", n, created)
			}
		})
	}
}

// TestReplaceCoversTheServicePorts: a replace intercept of a resolved
// workload that names no port covers every port its Services target, before
// any agent has declared one (the agents are injected after it is created).
func TestReplaceCoversTheServicePorts(t *testing.T) {
	m := startGRPC(t, Config{Authenticator: testTokens, Workloads: shopWorkloads})
	l := &grpcLab{s: m.s, c: m.client}
	alice := l.arrive(t, "alice")
	spec := &pb.InterceptSpec{Name: "all", Workload: "shop/web", Kind: pb.InterceptKind_REPLACE}
	info, err := l.c.CreateIntercept(alice, &pb.CreateInterceptRequest{Spec: spec})
	if err != nil {
		t.Fatalf("CreateIntercept: %v", err)
	}
	if want := []uint32{8080, 9100}; !slices.Equal(info.Ports, want) {
		t.Fatalf("covered ports %v, want %v (the workload's Service ports)", info.Ports, want)
	}
}

// TestListWorkloads: each workload of the namespace with its ports, its
// intercepts and its connected agents; others' namespaces stay out.
func TestListWorkloads(t *testing.T) {
	m := startGRPC(t, Config{Authenticator: testTokens, Workloads: shopWorkloads})
	l := &grpcLab{s: m.s, c: m.client}
	alice := l.arrive(t, "alice")
	if _, err := l.c.CreateIntercept(alice, &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "mine", Workload: "shop/web", Port: 8080,
		Kind: pb.InterceptKind_HTTP, Headers: map[string]string{"x-user": "alice"}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(as("t-web-agent"))
	defer cancel()
	for range 2 {
		if _, err := l.watchAgent(ctx, "shop/web", 8080); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := l.c.ListWorkloads(alice, &pb.ListWorkloadsRequest{Namespace: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range resp.Workloads {
		row := fmt.Sprintf("%s %s agents=%d", w.Kind, w.Name, w.Agents)
		for _, p := range w.Ports {
			row += fmt.Sprintf(" %d/%s%v", p.Port, p.Name, p.Services)
		}
		for _, x := range w.Intercepts {
			row += fmt.Sprintf(" %s:%s:%s", x.Spec.Name, x.OwnerUser, x.State)
		}
		got = append(got, row)
	}
	want := []string{"StatefulSet db agents=0", "Deployment web agents=2 8080/http[web:80] 9100/[metrics:9100] mine:alice:ACTIVE"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("ListWorkloads(shop):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := l.c.ListWorkloads(alice, &pb.ListWorkloadsRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ListWorkloads without a namespace = %v, want InvalidArgument", err)
	}
}

// TestListWorkloadsNeedsList: with a policy, listing the cluster's
// workloads needs list on deployments in the namespace, and the refusal
// names it.
func TestListWorkloadsNeedsList(t *testing.T) {
	policy := `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: lister, namespace: shop}
rules:
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: lister, namespace: shop}
subjects: [{kind: User, name: alice}]
roleRef: {kind: Role, name: lister}
`
	p, err := rbac.ParsePolicy(strings.NewReader(policy))
	if err != nil {
		t.Fatal(err)
	}
	m := startGRPC(t, Config{Authenticator: testTokens, Authorizer: p, Workloads: shopWorkloads})
	l := &grpcLab{s: m.s, c: m.client}
	if _, err := l.c.ListWorkloads(l.arrive(t, "alice"), &pb.ListWorkloadsRequest{Namespace: "shop"}); err != nil {
		t.Fatalf("alice, with list on deployments: %v", err)
	}
	_, err = l.c.ListWorkloads(l.arrive(t, "bob"), &pb.ListWorkloadsRequest{Namespace: "shop"})
	want := `user "bob" may not list deployments.apps in namespace "shop"`
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
		t.Fatalf("bob's list = %v, want PermissionDenied naming %s", err, want)
	}
	// The lab's workloads are the agents' names, which every user sees in
	// tether list already: no permission guards them.
	lab := startGRPC(t, Config{Authenticator: testTokens, Authorizer: p})
	ll := &grpcLab{s: lab.s, c: lab.client}
	if _, err := ll.c.ListWorkloads(ll.arrive(t, "bob"), &pb.ListWorkloadsRequest{Namespace: "shop"}); err != nil {
		t.Fatalf("bob's list in the lab: %v", err)
	}
}

// TestListWorkloadsLab: without Workloads, the workloads are those that
// agents serve or intercepts name, in the namespace asked for.
func TestListWorkloadsLab(t *testing.T) {
	m := startGRPC(t, Config{Authenticator: testTokens})
	l := &grpcLab{s: m.s, c: m.client}
	ctx, cancel := context.WithCancel(as("t-web-agent"))
	defer cancel()
	if _, err := l.watchAgent(ctx, "default/web", 8080); err != nil {
		t.Fatal(err)
	}
	if _, err := l.watchAgent(ctx, "other/api", 8080); err != nil {
		t.Fatal(err)
	}
	resp, err := l.c.ListWorkloads(l.arrive(t, "alice"), &pb.ListWorkloadsRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Workloads) != 1 || resp.Workloads[0].Name != "web" || resp.Workloads[0].Agents != 1 {
		t.Fatalf("ListWorkloads(default) = %v, want web with one agent", resp.Workloads)
	}
}

// podAgents is an Authenticator that tells agents by a credential of
// their own, as kube/auth does with pod tokens: users by testTokens,
// agents by their token's pod.
type podAgents struct{ agents map[string]Identity }

func (p podAgents) AuthenticateToken(ctx context.Context, token string) (Identity, bool, error) {
	return testTokens.AuthenticateToken(ctx, token)
}

func (p podAgents) AuthenticateAgent(_ context.Context, token string) (Identity, bool, error) {
	id, ok := p.agents[token]
	if !ok {
		return Identity{}, false, errors.New("token audiences do not include tether.dev/agent")
	}
	return id, true, nil
}

func (podAgents) AgentCredential() string {
	return "a projected service-account token of audience tether.dev/agent"
}

// TestPodAgentServesItsWorkloadOnly: an agent known by its pod serves
// that pod's workload and no other, whatever the policy; a developer's
// token is refused as an agent, saying what an agent presents.
func TestPodAgentServesItsWorkloadOnly(t *testing.T) {
	authn := podAgents{agents: map[string]Identity{
		"pod-web": {User: "system:serviceaccount:shop:default", Workload: "shop/web", Pod: "shop/web-5d9f-abcde"},
	}}
	m := startGRPC(t, Config{Authenticator: authn})
	l := &grpcLab{s: m.s, c: m.client}
	for _, tc := range []struct {
		name, token, workload string
		code                  codes.Code
		want                  string
	}{
		{"its workload", "pod-web", "shop/web", codes.OK, ""},
		{"another workload", "pod-web", "shop/api", codes.PermissionDenied,
			"agent of pod shop/web-5d9f-abcde may serve only its own workload shop/web, not shop/api"},
		{"a developer's token", "t-alice", "shop/web", codes.PermissionDenied,
			"WatchAgent needs an agent's token, a projected service-account token of audience tether.dev/agent; this token is not one (a developer's token never is): token audiences do not include tether.dev/agent"},
		{"no token", "", "shop/web", codes.Unauthenticated, "WatchAgent needs an agent's token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.token != "" {
				ctx, cancel = context.WithCancel(as(tc.token))
				defer cancel()
			}
			_, err := l.watchAgent(ctx, tc.workload, 8080)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("WatchAgent(%s) = %v, want %v containing %q", tc.workload, err, tc.code, tc.want)
			}
		})
	}
	// A pod's agent token is no user's: user calls refuse it.
	if _, err := l.c.Arrive(as("pod-web"), &pb.ArriveRequest{User: "x", Host: "h"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Arrive with a pod's agent token = %v, want Unauthenticated", err)
	}
	// An identity in the agent group is refused on user calls, and the
	// refusal names the API server, not a token file, as the source.
	want := "Arrive needs the user role (an identity the API server places outside group tether:agents)"
	if _, err := l.c.Arrive(as("t-web-agent"), &pb.ArriveRequest{User: "x", Host: "h"}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
		t.Fatalf("Arrive as a member of the agent group = %v, want PermissionDenied: %s", err, want)
	}
}

// TestPodAgentTunnelOfAnotherWorkload: AgentTunnel applies the same
// binding to the intercept's workload.
func TestPodAgentTunnelOfAnotherWorkload(t *testing.T) {
	authn := podAgents{agents: map[string]Identity{
		"pod-api": {User: "system:serviceaccount:shop:default", Workload: "shop/api", Pod: "shop/api-0"},
	}}
	m := startGRPC(t, Config{Authenticator: authn})
	l := &grpcLab{s: m.s, c: m.client}
	x, err := l.c.CreateIntercept(l.arrive(t, "alice"), &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "w", Workload: "shop/web", Port: 8080, Kind: pb.InterceptKind_GLOBAL}})
	if err != nil {
		t.Fatal(err)
	}
	err = l.refusedFlow(as("pod-api"), x.Id, 8080)
	want := "agent of pod shop/api-0 may serve only its own workload shop/api, not shop/web"
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
		t.Fatalf("AgentTunnel of another workload's intercept = %v, want PermissionDenied: %s", err, want)
	}
}

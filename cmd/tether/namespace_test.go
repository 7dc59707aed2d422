package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
)

// TestWorkloadNamespace: --namespace wins; else the kubeconfig's current
// context's namespace; else default. A broken kubeconfig is an error
// that says what to give instead.
func TestWorkloadNamespace(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://198.18.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts:
- {name: shop, context: {cluster: c, user: u, namespace: shop}}
- {name: plain, context: {cluster: c, user: u}}
current-context: %s
`
	for _, tc := range []struct {
		name, kubeconfig, flag, want, err string
	}{
		{"flag", write("shop", strings.Replace(kubeconfig, "%s", "shop", 1)), "dev", "dev", ""},
		{"current context's namespace", write("shop", strings.Replace(kubeconfig, "%s", "shop", 1)), "", "shop", ""},
		{"context without a namespace", write("plain", strings.Replace(kubeconfig, "%s", "plain", 1)), "", "default", ""},
		{"no kubeconfig", filepath.Join(dir, "missing"), "", "default", ""},
		{"broken kubeconfig", write("broken", "{not yaml"), "", "", "give --namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", tc.kubeconfig)
			t.Setenv("KUBERNETES_SERVICE_HOST", "")
			got, err := workloadNamespace(tc.flag)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("workloadNamespace = %q, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("workloadNamespace = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestInterceptTarget: the argument is the workload in the namespace and
// the intercept's name, or with --workload the intercept's name only.
func TestInterceptTarget(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	for _, tc := range []struct {
		name, arg, workload, namespace string
		want, err                      string
	}{
		{"workload in the namespace", "web", "", "shop", "web on shop/web", ""},
		{"workload in the default namespace", "web", "", "", "web on default/web", ""},
		{"lab: --workload", "mine", "default/web", "", "mine on default/web", ""},
		{"--workload with --namespace", "mine", "default/web", "shop", "", "--namespace names the namespace of a WORKLOAD argument"},
		{"a slash in the argument", "shop/web", "", "", "", "give the workload's name, and its namespace with --namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := interceptTarget(tc.arg, tc.workload, tc.namespace)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("interceptTarget = %v, %v; want an error containing %q", spec, err, tc.err)
				}
				return
			}
			if err != nil || spec.Name+" on "+spec.Workload != tc.want {
				t.Fatalf("interceptTarget = %v, %v; want %s", spec, err, tc.want)
			}
		})
	}
}

// TestListWorkloadsOutput: `tether list --workloads` asks for the
// namespace and shows kind, ports, agents and intercepts; --json has
// the same.
func TestListWorkloadsOutput(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterDaemonServer(srv, workloadsDaemon{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	run := func(args ...string) string {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&bytes.Buffer{})
		root.SetArgs(append([]string{"--socket", socket, "list", "--workloads", "-n", "shop"}, args...))
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("list --workloads %v: %v", args, err)
		}
		return out.String()
	}
	want := `NAME  KIND         PORTS                                                    AGENTS   INTERCEPTS
cart  Deployment   8080/http (cart:80, cart-alt:8080), 9100 (metrics:9100)  2 ready  mine (alice@laptop, ACTIVE)
db    StatefulSet  -                                                        none     -
`
	if got := run(); got != want {
		t.Errorf("list --workloads:\n%s\nwant:\n%s", got, want)
	}
	var rows []workloadJSON
	if err := json.Unmarshal([]byte(run("--json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].AgentState != "2 ready" || rows[0].Intercepts[0].OwnerUser != "alice" || rows[0].Ports[0].Services[1] != "cart-alt:8080" ||
		rows[1].AgentState != "none" || rows[1].Ports == nil || rows[1].Intercepts == nil {
		t.Fatalf("list --workloads --json = %+v", rows)
	}
}

type workloadsDaemon struct{ pb.UnimplementedDaemonServer }

func (workloadsDaemon) ListWorkloads(_ context.Context, req *pbm.ListWorkloadsRequest) (*pbm.ListWorkloadsResponse, error) {
	if req.Namespace != "shop" {
		return nil, status.Errorf(codes.InvalidArgument, "namespace %q, want shop", req.Namespace)
	}
	return &pbm.ListWorkloadsResponse{Workloads: []*pbm.WorkloadInfo{
		{Namespace: "shop", Name: "cart", Kind: "Deployment", Agents: 2,
			Ports: []*pbm.WorkloadPort{
				{Port: 8080, Name: "http", Container: "app", Services: []string{"cart:80", "cart-alt:8080"}},
				{Port: 9100, Container: "app", Services: []string{"metrics:9100"}},
			},
			Intercepts: []*pbm.InterceptInfo{info("ID1", "mine", "alice", "shop/cart")}},
		{Namespace: "shop", Name: "db", Kind: "StatefulSet"},
	}}, nil
}

package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// fakeDaemon answers Status and List on a unix socket and counts the
// calls that would count as activity.
type fakeDaemon struct {
	pb.UnimplementedDaemonServer
	activity atomic.Int32
}

func (f *fakeDaemon) note(ctx context.Context) {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(wire.MDNoActivity)) == 0 {
		f.activity.Add(1)
	}
}

func info(id, name, owner, workload string) *pbm.InterceptInfo {
	return &pbm.InterceptInfo{Id: id, OwnerUser: owner, OwnerHost: "laptop", State: "ACTIVE",
		Spec: &pbm.InterceptSpec{Name: name, Workload: workload, Port: 8080}}
}

func (f *fakeDaemon) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	f.note(ctx)
	return &pb.StatusResponse{Connected: true, Intercepts: []*pb.LocalIntercept{
		{Info: info("ID1", "mine", "alice", "default/web")}, {Info: info("ID2", "other", "alice", "default/api")},
	}}, nil
}

func (f *fakeDaemon) List(ctx context.Context, _ *pbm.ListInterceptsRequest) (*pbm.ListInterceptsResponse, error) {
	f.note(ctx)
	return &pbm.ListInterceptsResponse{
		Intercepts: []*pbm.InterceptInfo{info("ID1", "mine", "alice", "default/web"), info("ID3", "bobs", "bob", "shop/cart")},
		Workloads:  []string{"default/web", "default/db"},
	}, nil
}

func (f *fakeDaemon) ListWorkloads(ctx context.Context, req *pbm.ListWorkloadsRequest) (*pbm.ListWorkloadsResponse, error) {
	f.note(ctx)
	if req.Namespace != "shop" {
		return &pbm.ListWorkloadsResponse{}, nil
	}
	return &pbm.ListWorkloadsResponse{Workloads: []*pbm.WorkloadInfo{
		{Namespace: "shop", Name: "cart", Kind: "Deployment", Agents: 2}, {Namespace: "shop", Name: "db", Kind: "StatefulSet"},
	}}, nil
}

// complete runs `tether __complete args...` and returns the suggestions
// and the directive line.
func complete(t *testing.T, socket string, args ...string) (suggestions []string, directive string) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(append([]string{"__complete", "--socket", socket}, args...))
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("__complete %v: %v", args, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.HasPrefix(line, ":") {
			directive = line
			continue
		}
		suggestions = append(suggestions, line)
	}
	return suggestions, directive
}

func TestCompletion(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeDaemon{}
	srv := grpc.NewServer()
	pb.RegisterDaemonServer(srv, fake)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	noFiles := ":4" // ShellCompDirectiveNoFileComp
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"leave: my intercept names", []string{"leave", ""}, []string{"mine", "other"}},
		{"leave: one argument only", []string{"leave", "mine", ""}, nil},
		{"revoke: every id, described", []string{"revoke", ""}, []string{"ID1\tmine of alice@laptop on default/web, ACTIVE", "ID3\tbobs of bob@laptop on shop/cart, ACTIVE"}},
		{"--workload: served and intercepted workloads", []string{"intercept", "x", "--workload", ""}, []string{"default/db", "default/web", "shop/cart"}},
		{"intercept: the namespace's workloads", []string{"intercept", "-n", "shop", "--to", "7000", ""},
			[]string{"cart\tDeployment in shop, agents: 2 ready", "db\tStatefulSet in shop, agents: none"}},
		{"intercept --workload: a new name", []string{"intercept", "--workload", "shop/cart", "--to", "7000", ""}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, directive := complete(t, socket, tc.args...)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || directive != noFiles {
				t.Fatalf("got %q %s, want %q %s", got, directive, tc.want, noFiles)
			}
		})
	}
	if n := fake.activity.Load(); n != 0 {
		t.Fatalf("%d completion calls counted as activity", n)
	}

	// No daemon: no suggestions, an error directive, no file names.
	got, directive := complete(t, filepath.Join(t.TempDir(), "none.sock"), "leave", "")
	if len(got) != 0 || directive != ":5" {
		t.Fatalf("without a daemon: %q %s", got, directive)
	}
}

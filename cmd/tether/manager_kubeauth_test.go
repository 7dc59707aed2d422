package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tether-dev/tether/internal/apitest"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// `tether manager --auth-mode kubernetes` asks the API server: a token is
// who TokenReview says, an unknown one is refused, and revoke is decided
// by SubjectAccessReview (system:masters may, a bare service account may
// not, and is told what it misses), as is the removal of every agent;
// intercepts name the cluster's workloads.
func TestManagerAuthModeKubernetes(t *testing.T) {
	admin := apitest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(admin)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tools"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("tools").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "dev"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts("tools").CreateToken(ctx, "dev", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// With the agent injector (its webhook configuration is not there:
	// the manager says so and serves on).
	whl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, whPort, _ := net.SplitHostPort(whl.Addr().String())
	whl.Close()
	cc := runManager(t, "--auth-mode", "kubernetes", "--kubeconfig", apitest.Kubeconfig(t, admin), "--namespace", "tools",
		"--auth-cache-ttl", "100ms", "--subnet", "198.18.64.0/18", "--log-level", "error",
		"--webhook-port", whPort, "--agent-image", "tether.local/tether:dev", "--agent-manager", "traffic-manager.tools.svc:8081")
	c := pb.NewManagerClient(cc)
	arrive := func(token string) (context.Context, *pb.ArriveResponse, error) {
		tctx := metadata.AppendToOutgoingContext(ctx, wire.MDAuthorization, "Bearer "+token)
		actx, acancel := context.WithTimeout(tctx, 5*time.Second)
		defer acancel()
		resp, err := c.Arrive(actx, &pb.ArriveRequest{User: "claimed", Host: "laptop"})
		if err != nil {
			return nil, nil, err
		}
		return metadata.AppendToOutgoingContext(tctx, wire.MDSession, resp.SessionId, wire.MDSecret, resp.SessionSecret), resp, nil
	}
	// The manager may still be starting: poll the first arrival.
	var adminCtx context.Context
	deadline := time.Now().Add(30 * time.Second)
	for {
		var resp *pb.ArriveResponse
		adminCtx, resp, err = arrive(admin.BearerToken)
		if err == nil {
			if resp.User != "admin" {
				t.Fatalf("the admin token is user %q, want admin (TokenReview)", resp.User)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("arrive with the admin token: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, _, err := arrive("not-a-token"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("arrive with an unknown token = %v, want Unauthenticated", err)
	}
	devCtx, resp, err := arrive(tr.Status.Token)
	if err != nil || resp.User != "system:serviceaccount:tools:dev" {
		t.Fatalf("arrive with the service account's token: %v %v", resp, err)
	}
	revoke := func(ctx context.Context) error {
		_, err := c.RevokeIntercept(ctx, &pb.RevokeInterceptRequest{Id: "none"})
		return err
	}
	want := `user "system:serviceaccount:tools:dev" may not get or update configmaps "traffic-manager" in namespace "tools"`
	if err := revoke(devCtx); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
		t.Fatalf("the service account's revoke = %v, want PermissionDenied naming %s", err, want)
	}
	if err := revoke(adminCtx); status.Code(err) != codes.NotFound {
		t.Fatalf("the admin's revoke = %v, want NotFound (allowed; no such intercept)", err)
	}
	// tether uninstall --agents is decided as revoke is.
	removeAgents := func(ctx context.Context) error {
		_, err := c.RemoveAgents(ctx, &pb.RemoveAgentsRequest{})
		return err
	}
	if err := removeAgents(devCtx); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
		t.Fatalf("the service account's agent removal = %v, want PermissionDenied naming %s", err, want)
	}
	if err := removeAgents(adminCtx); err != nil {
		t.Fatalf("the admin's agent removal = %v, want done (no workload had an agent)", err)
	}
	// With Kubernetes credentials the workloads are the cluster's: an
	// intercept of one that does not exist is refused, saying so.
	_, err = c.CreateIntercept(adminCtx, &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "web", Workload: "tools/web", Port: 8080, Kind: pb.InterceptKind_GLOBAL}})
	want = "no deployment, statefulset or replicaset web in tools; it has none"
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), want) {
		t.Fatalf("intercept of a workload that does not exist = %v, want NotFound: %s", err, want)
	}
}

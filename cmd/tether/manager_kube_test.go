package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tether-dev/tether/internal/apitest"
	pb "github.com/tether-dev/tether/rpc/manager"
)

// `tether manager --kubeconfig` follows the configmap traffic-manager in
// manager.namespace while it runs: daemons that arrive after a change are
// told the new rules.
func TestManagerFollowsTheConfigMap(t *testing.T) {
	admin := apitest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(admin)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tools"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := cs.CoreV1().ConfigMaps("tools").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "traffic-manager"},
		Data: map[string]string{"intercept.inactiveBlockTimeout": "5m"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cc := runManager(t, "--kubeconfig", apitest.Kubeconfig(t, admin), "--watch-configmap", "--namespace", "tools",
		"--subnet", "198.18.64.0/18", "--log-level", "error")
	told := func() time.Duration {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		defer acancel()
		// A user per arrival: limits.sessionsPerUser must not end the poll.
		id := fmt.Sprint(time.Now().UnixNano())
		resp, err := pb.NewManagerClient(cc).Arrive(actx, &pb.ArriveRequest{User: "dev-" + id, DaemonInstance: id})
		if err != nil {
			return 0
		}
		return time.Duration(resp.InactiveBlockTimeoutMs) * time.Millisecond
	}
	wait := func(want time.Duration) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for told() != want {
			if time.Now().After(deadline) {
				t.Fatalf("arriving daemons are not told %s", want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	wait(5 * time.Minute)
	cm.Data["intercept.inactiveBlockTimeout"] = "7m"
	if _, err := cs.CoreV1().ConfigMaps("tools").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait(7 * time.Minute)
}

// runManager runs `tether manager args... --listen ADDR` in the test's
// process on a free loopback port until the test ends, and returns a
// client connection to it. A manager that exits with an error fails t.
func runManager(t *testing.T, args ...string) *grpc.ClientConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	root := newRoot()
	root.SetArgs(append(append([]string{"manager"}, args...), "--listen", addr))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// Without Kubernetes credentials nothing is discovered: subnets are
// required, and the refusal names the key and what discovers them.
func TestManagerNeedsSubnetsWithoutKubernetes(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a pod
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no credentials", nil, "a manager with Kubernetes credentials (in a pod, or kube.config) discovers them"},
		{"discovery off", []string{"--kubeconfig", writeFile(t, "kubeconfig", "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"),
			"--discover-subnets=false"}, "with kube.discoverSubnets false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runTether(t, append([]string{"manager", "--listen", "127.0.0.1:0"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), "subnets: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("manager without subnets: %v, want %q", err, tc.want)
			}
		})
	}
}

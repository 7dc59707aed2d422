package auth_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/kube/auth"
	"github.com/tether-dev/tether/manager"
	"github.com/tether-dev/tether/manager/rbac"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// One real cluster per test process (internal/kubelab), shared by the
// tests; each test works in a namespace of its own.
var (
	cluster    *kubelab.Cluster
	admin      kubernetes.Interface
	skipReason string
)

// The caches are short so that a RoleBinding applied by a test takes
// effect within a poll or two.
const testTTL = 200 * time.Millisecond

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	bins := os.Getenv("KUBELAB_BINS")
	if bins == "" {
		bins = "../../bin/kube"
	}
	switch {
	case os.Geteuid() != 0:
		skipReason = "the test cluster needs root"
	case testing.Short():
		skipReason = "the test cluster does not run with -short"
	case len(kubelab.MissingBinaries(bins)) > 0:
		skipReason = fmt.Sprintf("the test cluster's binaries (%s) are missing in %s: run make kube-bins",
			strings.Join(kubelab.MissingBinaries(bins), ", "), bins)
	}
	if skipReason != "" {
		return m.Run()
	}
	dir := os.Getenv("KUBE_AUTH_TEST_DIR")
	if dir == "" {
		dir = "/tmp/tether-kubelab-kube-auth"
	}
	c, err := upWhenFree(dir, bins)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cluster = c
	code := func() int {
		rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if admin, err = kubernetes.NewForConfig(rc); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	if err := c.Down(); err != nil {
		fmt.Fprintln(os.Stderr, "kubelab: teardown:", err)
		code = 1
	}
	return code
}

// upWhenFree starts the cluster, waiting (at most ten minutes) while
// another directory's test cluster holds the machine: there is one per
// machine, and other packages' tests start theirs.
func upWhenFree(dir, bins string) (*kubelab.Cluster, error) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		c, err := kubelab.Up(context.Background(), kubelab.Options{Dir: dir, Bins: bins, Log: os.Stderr})
		if err == nil || !strings.Contains(err.Error(), "is running") || time.Now().After(deadline) {
			return c, err
		}
		fmt.Fprintln(os.Stderr, "kube/auth: waiting for the machine's test cluster:", err)
		time.Sleep(10 * time.Second)
	}
}

func requireCluster(t *testing.T) {
	t.Helper()
	if cluster == nil {
		t.Skip(skipReason)
	}
}

// newNamespace creates a namespace for the test, removed after it.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := "t-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	ctx := context.Background()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return name
}

func newAuth(t *testing.T) (*auth.Authenticator, *auth.Authorizer) {
	t.Helper()
	authn, authz, err := auth.New(auth.Config{Client: admin, TokenCacheTTL: testTTL, AllowCacheTTL: testTTL, DenyCacheTTL: testTTL})
	if err != nil {
		t.Fatal(err)
	}
	return authn, authz
}

func token(t *testing.T, name string) string {
	t.Helper()
	for _, u := range kubelab.Users {
		if u.Name == name {
			return u.Token
		}
	}
	t.Fatalf("no kubelab user %s", name)
	return ""
}

// grant applies, with the API, a Role of rules in ns bound to user.
func grant(t *testing.T, ns, name, user string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// eventually polls f until it returns nil, for at most limit.
func eventually(t *testing.T, what string, limit time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, limit, err)
		}
		time.Sleep(testTTL)
	}
}

// TestTokenIdentifiedByTokenReview: a static-token user of the cluster is
// who the API server says, with its groups; an unknown token is refused
// with the API server's reason.
func TestTokenIdentifiedByTokenReview(t *testing.T) {
	requireCluster(t)
	authn, _ := newAuth(t)
	ctx := context.Background()
	id, ok, err := authn.AuthenticateToken(ctx, token(t, "alice"))
	if err != nil || !ok {
		t.Fatalf("alice's token: ok=%v err=%v", ok, err)
	}
	if id.User != "alice" || !slices.Contains(id.Groups, "tether-dev") || !slices.Contains(id.Groups, "system:authenticated") || id.Agent() {
		t.Fatalf("alice's token is %+v, want user alice in tether-dev and system:authenticated, not an agent", id)
	}
	id, ok, err = authn.AuthenticateToken(ctx, "not-a-kubelab-token")
	if ok || err == nil {
		t.Fatalf("unknown token: %+v ok=%v err=%v, want a refusal with a reason", id, ok, err)
	}
	t.Logf("unknown token refused: %v", err)
}

// labManager serves a traffic manager on loopback that asks the cluster's
// API server who calls and what they may do, for namespace ns.
func labManager(t *testing.T, ns string) pb.ManagerClient {
	t.Helper()
	authn, authz := newAuth(t)
	m, err := manager.New(manager.Config{
		Subnets:       []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")},
		Authenticator: authn, Authorizer: authz, Namespace: ns,
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	m.Register(srv)
	go func() { _ = srv.Serve(ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); m.Shutdown(); srv.Stop() })
	return pb.NewManagerClient(cc)
}

// arrive opens a session with user's cluster token and returns the
// context of its calls.
func arrive(t *testing.T, c pb.ManagerClient, user string) context.Context {
	t.Helper()
	tok := metadata.AppendToOutgoingContext(context.Background(), wire.MDAuthorization, "Bearer "+token(t, user))
	resp, err := c.Arrive(tok, &pb.ArriveRequest{User: "claimed-" + user, Host: user + "-laptop"})
	if err != nil {
		t.Fatalf("arrive %s: %v", user, err)
	}
	if resp.User != user {
		t.Fatalf("arrive with %s's token: the manager says user %q, want the API server's %q", user, resp.User, user)
	}
	return metadata.AppendToOutgoingContext(tok, wire.MDSession, resp.SessionId, wire.MDSecret, resp.SessionSecret)
}

// TestUnknownTokenRefusedByManager: the manager refuses a token the API
// server does not know, before any session exists.
func TestUnknownTokenRefusedByManager(t *testing.T) {
	requireCluster(t)
	c := labManager(t, newNamespace(t))
	ctx := metadata.AppendToOutgoingContext(context.Background(), wire.MDAuthorization, "Bearer not-a-kubelab-token")
	_, err := c.Arrive(ctx, &pb.ArriveRequest{User: "alice", Host: "h"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Arrive with an unknown token = %v, want Unauthenticated", err)
	}
}

// TestRevokeDecidedByAPIServer: revoke needs get and update on configmap
// traffic-manager in the manager's namespace, as SubjectAccessReview
// decides. A refusal names what is missing; a Role applied with the API
// grants it (the answer is NotFound for an id that does not exist,
// which comes only after the permission check); bob stays refused.
func TestRevokeDecidedByAPIServer(t *testing.T) {
	requireCluster(t)
	ns := newNamespace(t)
	c := labManager(t, ns)
	alice, bob := arrive(t, c, "alice"), arrive(t, c, "bob")
	revoke := func(ctx context.Context) error {
		_, err := c.RevokeIntercept(ctx, &pb.RevokeInterceptRequest{Id: "no-such-intercept"})
		return err
	}
	err := revoke(alice)
	want := fmt.Sprintf(`user "alice" may not get or update configmaps "traffic-manager" in namespace %q`, ns)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
		t.Fatalf("revoke before the Role = %v, want PermissionDenied naming %s", err, want)
	}
	t.Logf("refused: %v", status.Convert(err).Message())
	grant(t, ns, "cm-get", "alice", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"traffic-manager"}, Verbs: []string{"get"}})
	eventually(t, "revoke refused for update only", 10*time.Second, func() error {
		err := revoke(alice)
		want := fmt.Sprintf(`user "alice" may not update configmaps "traffic-manager" in namespace %q`, ns)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
			return fmt.Errorf("revoke with get only = %v, want PermissionDenied naming %s", err, want)
		}
		return nil
	})
	grant(t, ns, "cm-update", "alice", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"traffic-manager"}, Verbs: []string{"update"}})
	eventually(t, "revoke allowed", 10*time.Second, func() error {
		if err := revoke(alice); status.Code(err) != codes.NotFound {
			return fmt.Errorf("revoke with get+update = %v, want NotFound (allowed, no such intercept)", err)
		}
		return nil
	})
	if err := revoke(bob); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("bob's revoke = %v, want PermissionDenied", err)
	}
}

// TestInterceptCreateDecidedByAPIServer: creating an intercept needs
// create on intercepts.tether.dev in the workload's namespace.
func TestInterceptCreateDecidedByAPIServer(t *testing.T) {
	requireCluster(t)
	ns := newNamespace(t)
	c := labManager(t, ns)
	alice := arrive(t, c, "alice")
	create := func() error {
		_, err := c.CreateIntercept(alice, &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "mine", Workload: ns + "/web", Port: 8080,
			Kind: pb.InterceptKind_HTTP, Headers: map[string]string{"x-user": "alice"}}})
		return err
	}
	err := create()
	want := fmt.Sprintf(`user "alice" may not create intercepts.tether.dev in namespace %q`, ns)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
		t.Fatalf("create before the Role = %v, want PermissionDenied naming %s", err, want)
	}
	grant(t, ns, "intercepts", "alice", rbacv1.PolicyRule{APIGroups: []string{rbac.APIGroup}, Resources: []string{"intercepts"}, Verbs: []string{"create"}})
	eventually(t, "create allowed", 10*time.Second, func() error {
		if err := create(); err != nil {
			return fmt.Errorf("create with the Role = %v, want the intercept", err)
		}
		return nil
	})
}

// TestAuthorizerFailureIsNotADenial: an authorizer that cannot reach the
// API server reports an error, which the manager turns into a failure,
// never into a decision.
func TestAuthorizerFailureIsNotADenial(t *testing.T) {
	requireCluster(t)
	rc, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	rc.Host = "https://127.0.0.1:1" // nothing listens there
	rc.Timeout = time.Second
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	authn, authz, err := auth.New(auth.Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	ok, _, err := authz.Authorize(context.Background(), rbac.Subject{User: "alice"}, rbac.CreateInterceptRequest("default"))
	if ok || err == nil {
		t.Fatalf("Authorize without an API server: ok=%v err=%v, want an error", ok, err)
	}
	_, ok, err = authn.AuthenticateToken(context.Background(), token(t, "alice"))
	if ok || err == nil {
		t.Fatalf("AuthenticateToken without an API server: ok=%v err=%v, want an error", ok, err)
	}
}

package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/kube/auth"
	"github.com/tether-dev/tether/kube/internal/labtest"
	"github.com/tether-dev/tether/manager"
	"github.com/tether-dev/tether/manager/rbac"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// The caches are short so that a RoleBinding applied by a test takes
// effect within a poll or two.
const testTTL = 200 * time.Millisecond

// One real cluster per test process, shared by the tests; each test works
// in a namespace of its own.
func TestMain(m *testing.M) { labtest.Main(m, "/tmp/tether-kubelab-kube-auth") }

func newAuth(t *testing.T, admin kubernetes.Interface) (*auth.Authenticator, *auth.Authorizer) {
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
func grant(t *testing.T, admin kubernetes.Interface, ns, name, user string, rules ...rbacv1.PolicyRule) {
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

func eventually(t *testing.T, what string, limit time.Duration, f func() error) {
	t.Helper()
	labtest.Eventually(t, what, limit, testTTL, f)
}

// TestTokenIdentifiedByTokenReview: a static-token user of the cluster is
// who the API server says, with its groups; an unknown token is refused
// with the API server's reason.
func TestTokenIdentifiedByTokenReview(t *testing.T) {
	_, admin, _ := labtest.Cluster(t)
	authn, _ := newAuth(t, admin)
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
func labManager(t *testing.T, admin kubernetes.Interface, ns string) pb.ManagerClient {
	t.Helper()
	authn, authz := newAuth(t, admin)
	return labtest.Manager(t, manager.Config{Authenticator: authn, Authorizer: authz, Namespace: ns})
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
	_, admin, _ := labtest.Cluster(t)
	c := labManager(t, admin, labtest.Namespace(t, admin))
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
	_, admin, _ := labtest.Cluster(t)
	ns := labtest.Namespace(t, admin)
	c := labManager(t, admin, ns)
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
	grant(t, admin, ns, "cm-get", "alice", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"traffic-manager"}, Verbs: []string{"get"}})
	eventually(t, "revoke refused for update only", 10*time.Second, func() error {
		err := revoke(alice)
		want := fmt.Sprintf(`user "alice" may not update configmaps "traffic-manager" in namespace %q`, ns)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
			return fmt.Errorf("revoke with get only = %v, want PermissionDenied naming %s", err, want)
		}
		return nil
	})
	grant(t, admin, ns, "cm-update", "alice", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"traffic-manager"}, Verbs: []string{"update"}})
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
	_, admin, _ := labtest.Cluster(t)
	ns := labtest.Namespace(t, admin)
	c := labManager(t, admin, ns)
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
	grant(t, admin, ns, "intercepts", "alice", rbacv1.PolicyRule{APIGroups: []string{rbac.APIGroup}, Resources: []string{"intercepts"}, Verbs: []string{"create"}})
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
	_, _, rc := labtest.Cluster(t)
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

// TestClientCertificateIdentified: with the cluster's client CA (from
// kube-system/extension-apiserver-authentication), a manager serving TLS
// identifies carol by her client certificate (common name and
// organizations, as the API server maps them); a certificate of another
// CA is refused.
func TestClientCertificateIdentified(t *testing.T) {
	c, admin, _ := labtest.Cluster(t)
	ca, err := auth.ClientCA(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	authn, authz, err := auth.New(auth.Config{Client: admin, ClientCA: ca, TokenCacheTTL: testTTL, AllowCacheTTL: testTTL, DenyCacheTTL: testTTL})
	if err != nil {
		t.Fatal(err)
	}
	m, err := manager.New(manager.Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")},
		Authenticator: authn, Authorizer: authz, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	serverCert := selfSigned(t, "tether-manager")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequestClientCert})))
	m.Register(srv)
	go func() { _ = srv.Serve(ln) }()
	defer func() { m.Shutdown(); srv.Stop() }()

	carol, err := clientcmd.BuildConfigFromFlags("", c.UserKubeconfig("carol", false))
	if err != nil {
		t.Fatal(err)
	}
	carolCert, err := tls.X509KeyPair(carol.TLSClientConfig.CertData, carol.TLSClientConfig.KeyData)
	if err != nil {
		t.Fatal(err)
	}
	arrive := func(cert tls.Certificate) (*pb.ArriveResponse, error) {
		cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			InsecureSkipVerify: true, // the test's own server certificate
			Certificates:       []tls.Certificate{cert},
		})))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return pb.NewManagerClient(cc).Arrive(ctx, &pb.ArriveRequest{User: "claimed", Host: "laptop"})
	}
	resp, err := arrive(carolCert)
	if err != nil || resp.User != "carol" {
		t.Fatalf("arrive with carol's certificate: %v %v, want user carol", resp, err)
	}
	if _, err := arrive(selfSigned(t, "carol")); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("arrive with a certificate of another CA = %v, want Unauthenticated", err)
	}
}

// selfSigned is a certificate of its own CA for cn.
func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"tether-dev"}},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

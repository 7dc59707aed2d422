package kube

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/tether-dev/tether/internal/apitest"
	"github.com/tether-dev/tether/kube/helm"
	"github.com/tether-dev/tether/manager"
)

// asManager applies the chart's Role and RoleBinding for the manager in ns
// and returns a config that acts as its service account: what the watcher
// does must be what the chart grants.
func asManager(t *testing.T, ctx context.Context, admin *rest.Config, ns string) *rest.Config {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(admin)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rel, err := helm.Render(ns, map[string]any{"subnets": []any{"198.18.64.0/18"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(rel.Manifest, "\n---") {
		if !strings.Contains(doc, "name: traffic-manager\n  namespace: "+ns) {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch o := obj.(type) {
		case *rbacv1.Role:
			_, err = cs.RbacV1().Roles(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "traffic-manager", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(admin)
	cfg.BearerToken = tok.Status.Token
	return cfg
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Against a real API server, with only the chart's RBAC: the configmap's
// values reach the manager as they change; a bad value is refused, the old
// values stay, and a Warning event on the configmap names the key.
func TestWatchRules(t *testing.T) {
	admin := apitest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const ns = "tether"
	cfg := asManager(t, ctx, admin, ns)
	cs := kubernetes.NewForConfigOrDie(admin)
	cms := cs.CoreV1().ConfigMaps(ns)
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName},
		Data: map[string]string{"intercept.inactiveBlockTimeout": "5m"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	m, err := manager.New(manager.Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.64.0/18")}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	wctx, stop := context.WithCancel(ctx)
	wait, err := WatchRules(wctx, kubernetes.NewForConfigOrDie(cfg), ns, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	timeout := func() time.Duration { r, _ := m.Rules(); return r.InactiveBlockTimeout }
	eventually(t, "the configmap's 5m applied", func() bool { return timeout() == 5*time.Minute })

	cm.Data = map[string]string{"intercept.inactiveBlockTimeout": "7m", "limits.sessionsPerUser": "2"}
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the change to 7m applied", func() bool { return timeout() == 7*time.Minute })
	if _, l := m.Rules(); l.SessionsPerUser != 2 {
		t.Fatalf("limits.sessionsPerUser: %d", l.SessionsPerUser)
	}

	cm.Data = map[string]string{"intercept.inactiveBlockTimeout": "5x", "grpc.connectionTTL": "1h"}
	if _, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var warning string
	eventually(t, "a Warning event naming the bad key", func() bool {
		list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list.Items {
			if e.Reason == ReasonInvalid && e.Type == corev1.EventTypeWarning && e.InvolvedObject.Name == ConfigMapName {
				warning = e.Message
				return true
			}
		}
		return false
	})
	if !strings.Contains(warning, `intercept.inactiveBlockTimeout: "5x"`) {
		t.Fatalf("the event does not name the key: %s", warning)
	}
	if r, _ := m.Rules(); r.InactiveBlockTimeout != 7*time.Minute || r.ConnectionTTL != manager.DefaultRules.ConnectionTTL {
		t.Fatalf("a refused configmap changed the rules: %+v", r)
	}
	stop()
	wait()
}

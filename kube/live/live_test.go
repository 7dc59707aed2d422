package live_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tether-dev/tether/kube/internal/labtest"
	"github.com/tether-dev/tether/kube/live"
	"github.com/tether-dev/tether/manager"
	"github.com/tether-dev/tether/manager/rbac"
)

func TestMain(m *testing.M) { labtest.Main(m, "/tmp/tether-kubelab-kube-live") }

// TestConfigMapChangesRules: a new intercept.inactiveBlockTimeout in the
// configmap reaches the running manager; a bad value leaves the rules as
// they were and records a Warning Event on the configmap naming the key.
func TestConfigMapChangesRules(t *testing.T) {
	_, admin, _ := labtest.Cluster(t)
	ns := labtest.Namespace(t, admin)
	ctx := context.Background()
	cms := admin.CoreV1().ConfigMaps(ns)
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: rbac.ConfigMapName},
		Data: map[string]string{"intercept.inactiveBlockTimeout": "7m"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := manager.New(manager.Config{Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := live.New(admin, ns, rbac.ConfigMapName, m.SetRules, slog.New(slog.DiscardHandler)).Run(wctx); err != nil {
			t.Error(err)
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	blockTimeout := func(want time.Duration) func() error {
		return func() error {
			if r, _ := m.Rules(); r.InactiveBlockTimeout != want {
				return fmt.Errorf("intercept.inactiveBlockTimeout is %s, want %s", r.InactiveBlockTimeout, want)
			}
			return nil
		}
	}
	labtest.Eventually(t, "the configmap's value at start", 30*time.Second, 100*time.Millisecond, blockTimeout(7*time.Minute))

	update(t, admin, ns, "3m")
	labtest.Eventually(t, "the changed value", 30*time.Second, 100*time.Millisecond, blockTimeout(3*time.Minute))

	update(t, admin, ns, "soon")
	labtest.Eventually(t, "an Event naming the key", 30*time.Second, 100*time.Millisecond, func() error {
		evs, err := admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == live.EventReason && e.Type == corev1.EventTypeWarning && e.InvolvedObject.Name == rbac.ConfigMapName &&
				strings.Contains(e.Message, `intercept.inactiveBlockTimeout: "soon" is not a positive duration`) {
				t.Logf("event: %s", e.Message)
				return nil
			}
		}
		return fmt.Errorf("no Warning %s event on configmap %s naming intercept.inactiveBlockTimeout among %d", live.EventReason, rbac.ConfigMapName, len(evs.Items))
	})
	if err := blockTimeout(3 * time.Minute)(); err != nil {
		t.Fatalf("after a bad value: %v", err)
	}
}

func update(t *testing.T, admin kubernetes.Interface, ns, blockTimeout string) {
	t.Helper()
	cms := admin.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(context.Background(), rbac.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["intercept.inactiveBlockTimeout"] = blockTimeout
	if _, err := cms.Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRunStopsWithItsContext: Run returns when its context ends (it has
// waited for the informer's goroutines, f.Shutdown).
func TestRunStopsWithItsContext(t *testing.T) {
	_, admin, _ := labtest.Cluster(t)
	ns := labtest.Namespace(t, admin)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- live.New(admin, ns, rbac.ConfigMapName, func(manager.Rules, manager.Limits) error { return nil }, slog.New(slog.DiscardHandler)).Run(ctx)
	}()
	time.Sleep(500 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its context's end")
	}
}

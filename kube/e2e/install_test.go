package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/tether-dev/tether/internal/kubestage"
	"github.com/tether-dev/tether/kube/internal/labtest"
)

// The chart installs on the cluster with the lab's image, its manager
// answers through an API-server port-forward (setUp checks both), and the
// traffic-manager configmap holds the values given at install.
func TestChartInstalls(t *testing.T) {
	k := setUp(t)
	cm, err := k.admin.CoreV1().ConfigMaps(kubestage.ManagerNamespace).Get(context.Background(), "traffic-manager", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"intercept.inactiveBlockTimeout": rules.BlockTimeout.String(),
		"grpc.connectionTTL":             rules.TTL.String(),
		"activity.reportInterval":        rules.ReportInterval.String(),
		"limits.sessionsPerUser":         "8",
	} {
		if got := cm.Data[key]; got != want {
			t.Errorf("configmap traffic-manager %s = %q, want %q", key, got, want)
		}
	}
}

// `tether helm uninstall` leaves no object of the release, in the
// release's namespace or cluster-wide, and no release record.
func TestHelmUninstallLeavesNothing(t *testing.T) {
	k := setUp(t)
	dyn, err := dynamic.NewForConfig(k.rc)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []struct {
		gvr        schema.GroupVersionResource
		namespaced bool
	}{
		{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, true},
		{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, true},
		{schema.GroupVersionResource{Version: "v1", Resource: "pods"}, true},
		{schema.GroupVersionResource{Version: "v1", Resource: "services"}, true},
		{schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, true},
		{schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, true},
		{schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}, true},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}, true},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}, true},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, false},
		{schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}, false},
		{schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}, false},
	}
	// The chart's objects carry the instance label; Helm's release records
	// are Secrets labelled name=tether, owner=helm.
	selectors := []string{"app.kubernetes.io/instance=tether", "owner=helm,name=tether"}
	count := func() []string {
		var found []string
		for _, kind := range kinds {
			for _, sel := range selectors {
				var ri dynamic.ResourceInterface = dyn.Resource(kind.gvr)
				if kind.namespaced {
					ri = dyn.Resource(kind.gvr).Namespace(kubestage.ManagerNamespace)
				}
				list, err := ri.List(context.Background(), metav1.ListOptions{LabelSelector: sel})
				if err != nil {
					t.Fatalf("list %s: %v", kind.gvr.Resource, err)
				}
				for _, o := range list.Items {
					found = append(found, kind.gvr.Resource+" "+o.GetNamespace()+"/"+o.GetName())
				}
			}
		}
		return found
	}
	if before := count(); len(before) < 8 {
		t.Fatalf("the release has only %v", before)
	}
	start := time.Now()
	out, err := exec.Command(tetherBin, "helm", "uninstall", "--kubeconfig", k.c.Kubeconfig()).CombinedOutput()
	if err != nil {
		t.Fatalf("tether helm uninstall: %v\n%s", err, out)
	}
	t.Logf("tether helm uninstall in %s: %s", time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(string(out)))
	// The pods go after their ReplicaSet, by the garbage collector.
	labtest.Eventually(t, "no object of the release", time.Minute, time.Second, func() error {
		if left := count(); len(left) > 0 {
			return fmt.Errorf("left after tether helm uninstall: %v", left)
		}
		return nil
	})
}

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/internal/kubestage"
	"github.com/tether-dev/tether/internal/testlog"
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

// An upgrade that adds tls.extraSANs issues the manager's certificate
// again from the same CA, so that forwarders holding the CA keep trusting
// it, and restarts the manager, which then serves a certificate that names
// the new address.
func TestExtraSANsOnUpgrade(t *testing.T) {
	k := setUp(t)
	ctx := context.Background()
	secret := func() *corev1.Secret {
		s, err := k.admin.CoreV1().Secrets(kubestage.ManagerNamespace).Get(ctx, "traffic-manager-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := secret()
	pod, err := kubestage.ManagerPod(ctx, k.admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := kubestage.Upgrade(ctx, k.c, testlog.New(t), "tls.extraSANs={"+kubelab.LaptopGW+"}"); err != nil {
		t.Fatal(err)
	}
	after := secret()
	if !bytes.Equal(after.Data["ca.crt"], before.Data["ca.crt"]) || bytes.Equal(after.Data["tls.crt"], before.Data["tls.crt"]) {
		t.Fatal("the upgrade did not issue a new certificate from the same CA")
	}
	// The Deployment rolls out a new pod; the old one may linger a moment.
	var now string
	labtest.Eventually(t, "a new manager pod", time.Minute, 500*time.Millisecond, func() error {
		if now, err = kubestage.ManagerPod(ctx, k.admin); err != nil || now == pod {
			return fmt.Errorf("manager pod %q (before %s): %v", now, pod, err)
		}
		return nil
	})
	addr, stop, err := kubestage.PortForward(ctx, k.rc, k.admin, kubestage.ManagerNamespace, now, 8081)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(before.Data["ca.crt"])
	labtest.Eventually(t, "the manager serves a certificate for "+kubelab.LaptopGW, 30*time.Second, 500*time.Millisecond, func() error {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: kubelab.LaptopGW, NextProtos: []string{"h2"}})
		if err != nil {
			return err
		}
		return c.Close()
	})
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

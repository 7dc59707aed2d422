package subnets

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/kube/helm"
	"github.com/tether-dev/tether/kube/internal/labtest"
)

func TestMain(m *testing.M) {
	labtest.Main(m, "/tmp/tether-kubelab-kube-subnets", "pause.tar", "testapp.tar")
}

func prefixes(ss ...string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// The discovered set: ranges as they are, a block around each address no
// range covers.
func TestDiscoveredSet(t *testing.T) {
	for _, tc := range []struct {
		name         string
		nodes, cidrs []netip.Prefix
		pods, svcs   []netip.Addr
		want         []netip.Prefix
	}{
		{name: "node and service ranges", nodes: prefixes("198.18.128.0/24"), cidrs: prefixes("198.18.160.0/24"),
			pods: addrs("198.18.128.7"), want: prefixes("198.18.128.0/24", "198.18.160.0/24")},
		{name: "pod IPs without node ranges", pods: addrs("198.18.130.7", "198.18.130.9", "198.18.131.2"),
			want: prefixes("198.18.130.0/24", "198.18.131.0/24")},
		{name: "pod IPs outside the node ranges", nodes: prefixes("198.18.128.0/24"), pods: addrs("198.18.128.7", "198.18.140.1"),
			want: prefixes("198.18.128.0/24", "198.18.140.0/24")},
		{name: "IPv6 pods", pods: addrs("fd00:10:1::5", "fd00:10:1::6"), want: prefixes("fd00:10:1::/64")},
		{name: "ClusterIPs without ServiceCIDRs", svcs: addrs("198.18.160.1", "198.18.161.20"), want: prefixes("198.18.160.0/24", "198.18.161.0/24")},
		{name: "nothing", want: prefixes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &discovery{nodes: map[string][]netip.Prefix{}, pods: map[string][]netip.Addr{}, services: map[string][]netip.Addr{}, serviceCIDRs: map[string][]netip.Prefix{}}
			for i, p := range tc.nodes {
				d.nodes[fmt.Sprint("n", i)] = []netip.Prefix{p}
			}
			for i, p := range tc.cidrs {
				d.serviceCIDRs[fmt.Sprint("c", i)] = []netip.Prefix{p}
			}
			for i, a := range tc.pods {
				d.pods[fmt.Sprint("ns/p", i)] = []netip.Addr{a}
			}
			for i, a := range tc.svcs {
				d.services[fmt.Sprint("ns/s", i)] = []netip.Addr{a}
			}
			if got := d.subnets(); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("subnets %v, want %v", got, tc.want)
			}
		})
	}
}

// recorder is a Setter that keeps the last set.
type recorder struct {
	mu   sync.Mutex
	last []netip.Prefix
}

func (r *recorder) SetSubnets(p []netip.Prefix) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = slices.Clone(p)
}

func (r *recorder) get() []netip.Prefix {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// TestDiscoversTheTestCluster: with the chart's ClusterRole, the manager
// finds the test cluster's pod range (the node's spec.podCIDRs, and the
// same from its pods' IPs alone) and service range (the ServiceCIDR API),
// and follows a ServiceCIDR that is created and deleted.
func TestDiscoversTheTestCluster(t *testing.T) {
	_, admin, adminREST := labtest.Cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := labtest.Namespace(t, admin)
	// A pod, so that pod IPs are there to see.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64),
		Containers: []corev1.Container{{Name: "app", Image: kubelab.TestAppImage, ImagePullPolicy: corev1.PullNever}}}}
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labtest.Eventually(t, "the pod's IP", 2*time.Minute, 250*time.Millisecond, func() error {
		p, err := admin.CoreV1().Pods(ns).Get(ctx, "app", metav1.GetOptions{})
		if err == nil && len(p.Status.PodIPs) == 0 {
			err = fmt.Errorf("no IP yet (%s)", p.Status.Phase)
		}
		return err
	})

	rec := &recorder{}
	wctx, stop := context.WithCancel(ctx)
	d, wait, err := watch(wctx, asManager(t, ctx, admin, adminREST, ns), rec, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); wait() }()
	want := prefixes(kubelab.PodCIDR, kubelab.ServiceCIDR)
	if got := rec.get(); !slices.Equal(got, want) {
		t.Fatalf("discovered %v, want %v", got, want)
	}
	d.mu.Lock()
	nodes, fromPods := slices.Concat(slices.Collect(maps.Values(d.nodes))...), map[netip.Prefix]bool{}
	for _, ips := range d.pods {
		for _, ip := range ips {
			fromPods[blockOf(ip)] = true
		}
	}
	d.mu.Unlock()
	if !slices.Equal(nodes, prefixes(kubelab.PodCIDR)) {
		t.Errorf("node spec.podCIDRs %v, want %s", nodes, kubelab.PodCIDR)
	}
	if len(fromPods) != 1 || !fromPods[netip.MustParsePrefix(kubelab.PodCIDR)] {
		t.Errorf("blocks from pod IPs %v, want only %s", fromPods, kubelab.PodCIDR)
	}

	extra := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: strings.ToLower(ns)}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"198.18.161.0/24"}}}
	if _, err := admin.NetworkingV1().ServiceCIDRs().Create(ctx, extra, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer admin.NetworkingV1().ServiceCIDRs().Delete(context.Background(), extra.Name, metav1.DeleteOptions{})
	labtest.Eventually(t, "the new ServiceCIDR", 30*time.Second, 100*time.Millisecond, func() error {
		if got, want := rec.get(), prefixes(kubelab.PodCIDR, kubelab.ServiceCIDR, "198.18.161.0/24"); !slices.Equal(got, want) {
			return fmt.Errorf("discovered %v, want %v", got, want)
		}
		return nil
	})
	if err := admin.NetworkingV1().ServiceCIDRs().Delete(ctx, extra.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	labtest.Eventually(t, "the deleted ServiceCIDR gone", 30*time.Second, 100*time.Millisecond, func() error {
		if got := rec.get(); !slices.Equal(got, want) {
			return fmt.Errorf("discovered %v, want %v", got, want)
		}
		return nil
	})
}

// asManager binds the chart's ClusterRole for the manager to a service
// account in ns and returns a client acting as it: discovery must work
// with what the chart grants.
func asManager(t *testing.T, ctx context.Context, admin kubernetes.Interface, adminREST *rest.Config, ns string) kubernetes.Interface {
	t.Helper()
	rel, err := helm.Render(ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "traffic-manager"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(rel.Manifest, "\n---") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			continue
		}
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			if o.Name != "traffic-manager-"+ns {
				continue
			}
			_, err = admin.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
			t.Cleanup(func() { admin.RbacV1().ClusterRoles().Delete(context.Background(), o.Name, metav1.DeleteOptions{}) })
		case *rbacv1.ClusterRoleBinding:
			if o.Name != "traffic-manager-"+ns {
				continue
			}
			_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
			t.Cleanup(func() {
				admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), o.Name, metav1.DeleteOptions{})
			})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	tok, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "traffic-manager", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(adminREST)
	cfg.BearerToken = tok.Status.Token
	return kubernetes.NewForConfigOrDie(cfg)
}

// Package subnets discovers a cluster's pod and service networks with
// client-go informers for the traffic manager, which gets them through its
// SetSubnets; the manager never imports it.
package subnets

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Setter is what Watch changes: the manager's SetSubnets.
type Setter interface {
	SetSubnets([]netip.Prefix)
}

// syncTimeout bounds how long Watch waits for the first lists.
const syncTimeout = 30 * time.Second

// The prefixes that a pod or Service IP stands for when no range says
// more: an IPv4 /24 and an IPv6 /64 each, the usual size of one node's
// pod range. A cluster whose nodes carry spec.podCIDRs needs none of
// them (those ranges cover its pods); elsewhere (a CNI with its own IPAM,
// a cluster without the ServiceCIDR API) they grow as pods and Services
// appear, one route per occupied block, never a guessed wide range that
// could take a network of the laptop's.
const (
	ipv4Block = 24
	ipv6Block = 64
)

// Watch discovers the cluster's networks and hands them to set
// whenever they change, until ctx ends:
//
//   - pod networks: every Node's spec.podCIDRs, and a block (above) around
//     each pod IP that no node's range covers (host-network pods are left
//     out: their IPs are the nodes');
//   - service networks: every ServiceCIDR (networking.k8s.io/v1) that is
//     not being deleted, where the API server serves them; elsewhere a
//     block around each Service's ClusterIPs.
//
// It returns once the informers have synced and the first set was handed
// over (an error after syncTimeout: the API server is unreachable or RBAC
// refuses a watch), or ctx ended; the informers stop with ctx, and the
// returned function waits for them.
func Watch(ctx context.Context, cs kubernetes.Interface, set Setter, log *slog.Logger) (wait func(), err error) {
	_, wait, err = watch(ctx, cs, set, log)
	return wait, err
}

// watch is Watch, with what the informers saw for tests to look at.
func watch(ctx context.Context, cs kubernetes.Interface, set Setter, log *slog.Logger) (_ *discovery, wait func(), err error) {
	log = log.With("component", "subnets")
	serviceCIDRs, err := servesServiceCIDRs(cs)
	if err != nil {
		return nil, nil, err
	}
	d := &discovery{set: set, nodes: map[string][]netip.Prefix{}, pods: map[string][]netip.Addr{},
		services: map[string][]netip.Addr{}, serviceCIDRs: map[string][]netip.Prefix{}}
	factory := informers.NewSharedInformerFactory(cs, 0)
	synced := []cache.InformerSynced{}
	follow := func(inf cache.SharedIndexInformer, what string, update func(key string, obj any)) error {
		// Only what discovery reads is kept: a large cluster's pods
		// would otherwise sit in the manager's memory whole.
		if err := inf.SetTransform(slim); err != nil {
			return fmt.Errorf("watch %s: %w", what, err)
		}
		on := func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				update(key, obj)
			}
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    on,
			UpdateFunc: func(_, obj any) { on(obj) },
			DeleteFunc: func(obj any) {
				if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
					update(key, nil)
				}
			},
		}); err != nil {
			return fmt.Errorf("watch %s: %w", what, err)
		}
		synced = append(synced, inf.HasSynced)
		return nil
	}
	if err := follow(factory.Core().V1().Nodes().Informer(), "nodes", d.node); err != nil {
		return nil, nil, err
	}
	if err := follow(factory.Core().V1().Pods().Informer(), "pods", d.pod); err != nil {
		return nil, nil, err
	}
	source, resource := "ServiceCIDR API", "servicecidrs"
	if serviceCIDRs {
		err = follow(factory.Networking().V1().ServiceCIDRs().Informer(), resource, d.serviceCIDR)
	} else {
		source, resource = "Service ClusterIPs (the API server serves no ServiceCIDRs)", "services"
		err = follow(factory.Core().V1().Services().Informer(), resource, d.service)
	}
	if err != nil {
		return nil, nil, err
	}
	log.Info("discovering subnets", "pods", "Node spec.podCIDRs and pod IPs", "services", source)
	factory.Start(ctx.Done())
	wait = func() {
		<-ctx.Done()
		factory.Shutdown()
		log.Info("stopped discovering subnets")
	}
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), synced...) {
		factory.Shutdown()
		return nil, nil, fmt.Errorf("cannot watch nodes, pods and %s within %s: is the API server reachable, and does the manager's ClusterRole grant list and watch on them (the chart's does)? Or set kube.discoverSubnets false and give subnets", map[bool]string{true: "servicecidrs", false: "services"}[serviceCIDRs], syncTimeout)
	}
	d.synced.Store(true)
	d.publish()
	log.Info("subnets discovered", "subnets", d.subnets())
	return d, wait, nil
}

// servesServiceCIDRs reports whether the API server serves
// networking.k8s.io/v1 servicecidrs (Kubernetes 1.33 and later).
func servesServiceCIDRs(cs kubernetes.Interface) (bool, error) {
	list, err := cs.Discovery().ServerResourcesForGroupVersion(networkingv1.SchemeGroupVersion.String())
	if err != nil {
		return false, fmt.Errorf("discover the API server's %s resources: %w", networkingv1.SchemeGroupVersion, err)
	}
	return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == "servicecidrs" }), nil
}

// discovery holds what the informers saw, by object key.
type discovery struct {
	set    Setter
	synced atomic.Bool // publish hands sets over only after the first full list

	mu           sync.Mutex // guards the maps and serialises publish
	nodes        map[string][]netip.Prefix
	pods         map[string][]netip.Addr
	services     map[string][]netip.Addr
	serviceCIDRs map[string][]netip.Prefix
}

func (d *discovery) node(key string, obj any) {
	var cidrs []netip.Prefix
	if n, ok := obj.(*corev1.Node); ok {
		all := n.Spec.PodCIDRs
		if len(all) == 0 && n.Spec.PodCIDR != "" {
			all = []string{n.Spec.PodCIDR}
		}
		cidrs = parsePrefixes(all)
	}
	d.update(func() { setOrDelete(d.nodes, key, cidrs) })
}

func (d *discovery) pod(key string, obj any) {
	var ips []netip.Addr
	if p, ok := obj.(*corev1.Pod); ok && !p.Spec.HostNetwork {
		for _, ip := range p.Status.PodIPs {
			ips = appendAddr(ips, ip.IP)
		}
	}
	d.update(func() { setOrDelete(d.pods, key, ips) })
}

func (d *discovery) service(key string, obj any) {
	var ips []netip.Addr
	if s, ok := obj.(*corev1.Service); ok {
		for _, ip := range s.Spec.ClusterIPs {
			ips = appendAddr(ips, ip) // "None" (headless) does not parse
		}
	}
	d.update(func() { setOrDelete(d.services, key, ips) })
}

func (d *discovery) serviceCIDR(key string, obj any) {
	var cidrs []netip.Prefix
	// One being deleted allocates no new IPs: the API server waits only
	// for its last Service to go.
	if c, ok := obj.(*networkingv1.ServiceCIDR); ok && c.DeletionTimestamp == nil {
		cidrs = parsePrefixes(c.Spec.CIDRs)
	}
	d.update(func() { setOrDelete(d.serviceCIDRs, key, cidrs) })
}

func (d *discovery) update(change func()) {
	d.mu.Lock()
	change()
	d.mu.Unlock()
	if d.synced.Load() {
		d.publish()
	}
}

// publish hands the current set over; the manager ignores a set equal to
// the one it has.
func (d *discovery) publish() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.set.SetSubnets(d.subnetsLocked())
}

func (d *discovery) subnets() []netip.Prefix {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.subnetsLocked()
}

// subnetsLocked is the discovered set: the ranges, then a block for each
// address no range covers, sorted and without duplicates.
func (d *discovery) subnetsLocked() []netip.Prefix {
	var ranges []netip.Prefix
	for _, m := range []map[string][]netip.Prefix{d.nodes, d.serviceCIDRs} {
		for _, ps := range m {
			ranges = append(ranges, ps...)
		}
	}
	blocks := map[netip.Prefix]struct{}{}
	for _, m := range []map[string][]netip.Addr{d.pods, d.services} {
		for _, ips := range m {
			for _, ip := range ips {
				if !slices.ContainsFunc(ranges, func(p netip.Prefix) bool { return p.Contains(ip) }) {
					blocks[blockOf(ip)] = struct{}{}
				}
			}
		}
	}
	out := append(ranges, slices.Collect(maps.Keys(blocks))...)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// blockOf is the block (ipv4Block, ipv6Block) around ip.
func blockOf(ip netip.Addr) netip.Prefix {
	bits := ipv4Block
	if ip.Is6() {
		bits = ipv6Block
	}
	p, _ := ip.Prefix(bits)
	return p
}

func parsePrefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

func appendAddr(ips []netip.Addr, s string) []netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return append(ips, a.Unmap())
	}
	return ips
}

func setOrDelete[V any](m map[string][]V, key string, v []V) {
	if len(v) == 0 {
		delete(m, key)
		return
	}
	m[key] = v
}

// slim keeps of an object only what discovery reads.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &corev1.Pod{ObjectMeta: slimMeta(o.ObjectMeta), Spec: corev1.PodSpec{HostNetwork: o.Spec.HostNetwork},
			Status: corev1.PodStatus{PodIPs: o.Status.PodIPs}}, nil
	case *corev1.Node:
		return &corev1.Node{ObjectMeta: slimMeta(o.ObjectMeta), Spec: corev1.NodeSpec{PodCIDR: o.Spec.PodCIDR, PodCIDRs: o.Spec.PodCIDRs}}, nil
	case *corev1.Service:
		return &corev1.Service{ObjectMeta: slimMeta(o.ObjectMeta), Spec: corev1.ServiceSpec{ClusterIPs: o.Spec.ClusterIPs}}, nil
	}
	return obj, nil // ServiceCIDRs are few; tombstones pass as they are
}

func slimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, ResourceVersion: m.ResourceVersion, DeletionTimestamp: m.DeletionTimestamp}
}

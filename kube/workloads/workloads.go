// Package workloads finds the cluster's workloads for the traffic manager
// with client-go: the Deployments, StatefulSets and ReplicaSets that can
// be intercepted, the container ports their Services target, and the
// workload that owns an agent's pod. It implements manager.Workloads and
// kube/auth's PodWorkloads, so the manager never imports Kubernetes.
package workloads

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/tether-dev/tether/manager"
)

// The kinds of workloads that can be intercepted.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindReplicaSet  = "ReplicaSet"
)

// Workloads asks the API server on every call: an intercept is created
// rarely, and its answer must be today's Services, not a cache's.
type Workloads struct{ client kubernetes.Interface }

var _ manager.Workloads = (*Workloads)(nil)

// New returns Workloads that asks the API server through client. The
// manager's service account needs get and list on deployments,
// statefulsets, replicasets (apps), services and get on pods.
func New(client kubernetes.Interface) *Workloads { return &Workloads{client: client} }

// template is a workload as Resolve and List see it: its pod template,
// and the Deployment owning it (a ReplicaSet's).
type template struct {
	ref   manager.WorkloadRef
	pod   *corev1.PodTemplateSpec
	owner *metav1.OwnerReference
}

// Resolve implements manager.Workloads. When several kinds share the name
// it takes the Deployment, else the StatefulSet, else the ReplicaSet (the
// order of kubectl's "all" category). A ReplicaSet that a Deployment owns
// is refused naming the Deployment: the Deployment would undo any change
// to it.
func (w *Workloads) Resolve(ctx context.Context, namespace, name string) (manager.Workload, error) {
	t, err := w.find(ctx, namespace, name)
	if err != nil {
		return manager.Workload{}, err
	}
	if t.owner != nil {
		return manager.Workload{}, &manager.WorkloadError{Kind: manager.ErrNotInterceptable,
			Msg: fmt.Sprintf("replicaset %s in %s is owned by deployment %s: intercept %s", name, namespace, t.owner.Name, t.owner.Name)}
	}
	svcs, err := w.client.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return manager.Workload{}, fmt.Errorf("services of %s: %w", namespace, err)
	}
	return manager.Workload{WorkloadRef: t.ref, Ports: Ports(t.pod, svcs.Items)}, nil
}

// find gets the first of the kinds, in Resolve's order, called name.
func (w *Workloads) find(ctx context.Context, ns, name string) (template, error) {
	apps := w.client.AppsV1()
	d, err := apps.Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return template{ref: ref(ns, name, KindDeployment), pod: &d.Spec.Template}, nil
	}
	if !apierrors.IsNotFound(err) {
		return template{}, fmt.Errorf("deployment %s in %s: %w", name, ns, err)
	}
	s, err := apps.StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return template{ref: ref(ns, name, KindStatefulSet), pod: &s.Spec.Template}, nil
	}
	if !apierrors.IsNotFound(err) {
		return template{}, fmt.Errorf("statefulset %s in %s: %w", name, ns, err)
	}
	r, err := apps.ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return template{ref: ref(ns, name, KindReplicaSet), pod: &r.Spec.Template, owner: deploymentOwner(r.OwnerReferences)}, nil
	}
	if !apierrors.IsNotFound(err) {
		return template{}, fmt.Errorf("replicaset %s in %s: %w", name, ns, err)
	}
	all, err := w.templates(ctx, ns)
	if err != nil {
		return template{}, err
	}
	return template{}, &manager.WorkloadError{Kind: manager.ErrNoWorkload,
		Msg: fmt.Sprintf("no deployment, statefulset or replicaset %s in %s; %s", name, ns, existing(ns, all))}
}

// existing names the workloads of ns for a refusal.
func existing(ns string, all []template) string {
	if len(all) == 0 {
		return "it has none"
	}
	const most = 10
	names := make([]string, 0, most)
	for i, t := range all {
		if i == most {
			names = append(names, fmt.Sprintf("and %d more (tether list --workloads -n %s)", len(all)-most, ns))
			break
		}
		names = append(names, t.ref.Name+" ("+strings.ToLower(t.ref.Kind)+")")
	}
	return "its workloads: " + strings.Join(names, ", ")
}

// List implements manager.Workloads: the namespace's Deployments,
// StatefulSets and ReplicaSets that no Deployment owns, sorted by name.
// Where names clash it has the one Resolve takes: intercepts and agents
// name a workload by namespace and name only.
func (w *Workloads) List(ctx context.Context, namespace string) ([]manager.Workload, error) {
	all, err := w.templates(ctx, namespace)
	if err != nil {
		return nil, err
	}
	svcs, err := w.client.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("services of %s: %w", namespace, err)
	}
	out := make([]manager.Workload, 0, len(all))
	for _, t := range all {
		out = append(out, manager.Workload{WorkloadRef: t.ref, Ports: Ports(t.pod, svcs.Items)})
	}
	return out, nil
}

// templates lists the workloads of ns that can be intercepted, sorted by
// name, one per name.
func (w *Workloads) templates(ctx context.Context, ns string) ([]template, error) {
	apps := w.client.AppsV1()
	var out []template
	ds, err := apps.Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("deployments of %s: %w", ns, err)
	}
	for i := range ds.Items {
		out = append(out, template{ref: ref(ns, ds.Items[i].Name, KindDeployment), pod: &ds.Items[i].Spec.Template})
	}
	ss, err := apps.StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("statefulsets of %s: %w", ns, err)
	}
	for i := range ss.Items {
		out = append(out, template{ref: ref(ns, ss.Items[i].Name, KindStatefulSet), pod: &ss.Items[i].Spec.Template})
	}
	rs, err := apps.ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("replicasets of %s: %w", ns, err)
	}
	for i := range rs.Items {
		if deploymentOwner(rs.Items[i].OwnerReferences) == nil {
			out = append(out, template{ref: ref(ns, rs.Items[i].Name, KindReplicaSet), pod: &rs.Items[i].Spec.Template})
		}
	}
	order := map[string]int{KindDeployment: 0, KindStatefulSet: 1, KindReplicaSet: 2}
	slices.SortStableFunc(out, func(a, b template) int {
		return cmp.Or(strings.Compare(a.ref.Name, b.ref.Name), order[a.ref.Kind]-order[b.ref.Kind])
	})
	// A name is one workload: Resolve's, the first kind in its order.
	return slices.CompactFunc(out, func(a, b template) bool { return a.ref.Name == b.ref.Name }), nil
}

func ref(ns, name, kind string) manager.WorkloadRef {
	return manager.WorkloadRef{Namespace: ns, Name: name, Kind: kind}
}

// deploymentOwner is the Deployment controlling an object, if one does.
func deploymentOwner(refs []metav1.OwnerReference) *metav1.OwnerReference {
	if c := controllerOf(refs); c != nil && c.Kind == KindDeployment && isApps(c) {
		return c
	}
	return nil
}

func controllerOf(refs []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range refs {
		if refs[i].Controller != nil && *refs[i].Controller {
			return &refs[i]
		}
	}
	return nil
}

func isApps(r *metav1.OwnerReference) bool {
	return strings.HasPrefix(r.APIVersion, appsv1.GroupName+"/")
}

// Ports are the TCP container ports of pod that the Services selecting its
// labels target, sorted, each with the Service ports that reach it. A
// numeric targetPort (or none: the Service's port) counts even when no
// container declares it, with an empty Container; a named one needs a
// container port of that name. Services without a selector (their
// endpoints are made by hand) select nothing.
func Ports(pod *corev1.PodTemplateSpec, svcs []corev1.Service) []manager.WorkloadPort {
	byPort := map[uint16]*manager.WorkloadPort{}
	podLabels := labels.Set(pod.Labels)
	for _, svc := range svcs {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			p, ok := target(pod, sp)
			if !ok {
				continue
			}
			wp := byPort[p.Port]
			if wp == nil {
				wp = &p
				byPort[p.Port] = wp
			}
			if !slices.Contains(wp.Services, svc.Name) {
				wp.Services = append(wp.Services, svc.Name)
			}
			wp.Via = append(wp.Via, manager.ServicePort{Service: svc.Name, Port: uint16(sp.Port)})
		}
	}
	out := make([]manager.WorkloadPort, 0, len(byPort))
	for _, p := range byPort {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b manager.WorkloadPort) int { return int(a.Port) - int(b.Port) })
	return out
}

// target is the container port a Service port reaches in pod.
func target(pod *corev1.PodTemplateSpec, sp corev1.ServicePort) (manager.WorkloadPort, bool) {
	tp := sp.TargetPort
	if tp.Type == intstr.String {
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == tp.StrVal && tcp(cp) {
					return manager.WorkloadPort{Port: uint16(cp.ContainerPort), Name: cp.Name, Container: c.Name}, true
				}
			}
		}
		return manager.WorkloadPort{}, false
	}
	n := tp.IntVal
	if n == 0 {
		n = sp.Port
	}
	if n <= 0 || n > 65535 {
		return manager.WorkloadPort{}, false
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.ContainerPort == n && tcp(cp) {
				return manager.WorkloadPort{Port: uint16(n), Name: cp.Name, Container: c.Name}, true
			}
		}
	}
	return manager.WorkloadPort{Port: uint16(n)}, true
}

func tcp(cp corev1.ContainerPort) bool { return cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP }

// Objects gets what the owner walk reads: a pod, a ReplicaSet.
type Objects interface {
	Pod(ctx context.Context, namespace, name string) (metav1.Object, error)
	ReplicaSet(ctx context.Context, namespace, name string) (metav1.Object, error)
}

// clientObjects is Objects from the API server.
type clientObjects struct{ client kubernetes.Interface }

func (c clientObjects) Pod(ctx context.Context, ns, name string) (metav1.Object, error) {
	return c.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
}

func (c clientObjects) ReplicaSet(ctx context.Context, ns, name string) (metav1.Object, error) {
	return c.client.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
}

// WorkloadOfPod is the workload that owns the live pod namespace/name
// whose UID is uid: its agent serves that workload only (kube/auth's
// PodWorkloads).
func (w *Workloads) WorkloadOfPod(ctx context.Context, namespace, name, uid string) (manager.WorkloadRef, error) {
	return OwnerWorkload(ctx, clientObjects{w.client}, namespace, name, uid)
}

// ErrNotAWorkloadPod: the pod is not a pod of a workload that can be
// intercepted.
var ErrNotAWorkloadPod = errors.New("not a pod of an interceptable workload")

// OwnerWorkload walks the owner chain of pod namespace/name (which must
// have uid: a pod of the same name made later is another pod) to its
// workload: ReplicaSet → Deployment, StatefulSet, or a ReplicaSet of its
// own.
func OwnerWorkload(ctx context.Context, o Objects, namespace, name, uid string) (manager.WorkloadRef, error) {
	pod, err := o.Pod(ctx, namespace, name)
	if err != nil {
		return manager.WorkloadRef{}, fmt.Errorf("pod %s/%s: %w", namespace, name, err)
	}
	if uid != "" && pod.GetUID() != types.UID(uid) {
		return manager.WorkloadRef{}, fmt.Errorf("%w: pod %s/%s is uid %s now, not the token's %s (the pod was replaced)", ErrNotAWorkloadPod, namespace, name, pod.GetUID(), uid)
	}
	c := controllerOf(pod.GetOwnerReferences())
	switch {
	case c == nil:
		return manager.WorkloadRef{}, fmt.Errorf("%w: pod %s/%s has no controller", ErrNotAWorkloadPod, namespace, name)
	case c.Kind == KindStatefulSet && isApps(c):
		return ref(namespace, c.Name, KindStatefulSet), nil
	case c.Kind == KindReplicaSet && isApps(c):
		rs, err := o.ReplicaSet(ctx, namespace, c.Name)
		if err != nil {
			return manager.WorkloadRef{}, fmt.Errorf("replicaset %s/%s of pod %s: %w", namespace, c.Name, name, err)
		}
		if rs.GetUID() != c.UID {
			return manager.WorkloadRef{}, fmt.Errorf("%w: pod %s/%s's replicaset %s was replaced", ErrNotAWorkloadPod, namespace, name, c.Name)
		}
		if d := deploymentOwner(rs.GetOwnerReferences()); d != nil {
			return ref(namespace, d.Name, KindDeployment), nil
		}
		return ref(namespace, c.Name, KindReplicaSet), nil
	default:
		return manager.WorkloadRef{}, fmt.Errorf("%w: pod %s/%s is controlled by %s %s, which tether does not intercept (Deployments, StatefulSets and ReplicaSets)",
			ErrNotAWorkloadPod, namespace, name, c.Kind, c.Name)
	}
}

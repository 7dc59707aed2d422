// Package inject puts Tether's agent into the pods of intercepted
// workloads and takes it out again: manager.Injector with client-go.
//
// The manager marks an intercepted workload's pod template (a label that
// sends its pods to the mutating webhook, annotations with the ports and
// the workload), which rolls the workload out; the webhook (Webhook) adds
// an agent container to each new pod. The agent takes over the port the
// workload's Service targets by name: the app's port is renamed and the
// agent claims the name on a number of its own, forwarding to the app on
// loopback, so no NET_ADMIN and no iptables are needed. What the manager
// changed is recorded on the workload, so RemoveAll restores the template
// exactly and the workload rolls back to its pods of before. Repair
// replaces the pods that started while the webhook was down, without an
// agent (repair.go).
package inject

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tether-dev/tether/manager"
)

// Injector implements manager.Injector.
type Injector struct {
	client kubernetes.Interface
	// namespace is the manager's: never injected (the webhook's
	// namespaceSelector leaves it out too).
	namespace string
	log       *slog.Logger
}

var _ manager.Injector = (*Injector)(nil)

// New returns an Injector acting with client, for a manager in namespace.
func New(client kubernetes.Interface, namespace string, log *slog.Logger) *Injector {
	if log == nil {
		log = slog.Default()
	}
	return &Injector{client: client, namespace: namespace, log: log.With("component", "inject")}
}

// Kinds of workloads.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindReplicaSet  = "ReplicaSet"
)

// object is a workload of any kind, with its pod template.
type object struct {
	kind string
	meta *metav1.ObjectMeta
	tmpl *corev1.PodTemplateSpec
	// selector selects its pods (a ReplicaSet's are replaced by hand).
	selector *metav1.LabelSelector
}

// get finds w. An empty Kind (a workload the manager only knows by name)
// is each kind in turn.
func (in *Injector) get(ctx context.Context, w manager.WorkloadRef) (object, error) {
	kinds := []string{w.Kind}
	if w.Kind == "" {
		kinds = []string{KindDeployment, KindStatefulSet, KindReplicaSet}
	}
	apps := in.client.AppsV1()
	for _, kind := range kinds {
		var o object
		var err error
		switch kind {
		case KindDeployment:
			var d *appsv1.Deployment
			if d, err = apps.Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{}); err == nil {
				o = object{kind, &d.ObjectMeta, &d.Spec.Template, d.Spec.Selector}
			}
		case KindStatefulSet:
			var s *appsv1.StatefulSet
			if s, err = apps.StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{}); err == nil {
				o = object{kind, &s.ObjectMeta, &s.Spec.Template, s.Spec.Selector}
			}
		case KindReplicaSet:
			var r *appsv1.ReplicaSet
			if r, err = apps.ReplicaSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{}); err == nil {
				o = object{kind, &r.ObjectMeta, &r.Spec.Template, r.Spec.Selector}
			}
		default:
			return object{}, fmt.Errorf("workload %s: kind %q is not Deployment, StatefulSet or ReplicaSet", w.Key(), kind)
		}
		if err == nil {
			return o, nil
		}
		if !apierrors.IsNotFound(err) {
			return object{}, fmt.Errorf("workload %s: %w", w.Key(), err)
		}
	}
	return object{}, fmt.Errorf("no Deployment, StatefulSet or ReplicaSet %s in namespace %s", w.Name, w.Namespace)
}

// Check implements manager.Injector: it refuses what the webhook could not
// do, and a port a Service targets by number (only a name can be taken
// over), before anything changes.
func (in *Injector) Check(ctx context.Context, w manager.Workload, ports []uint16) error {
	if w.Namespace == in.namespace {
		return fmt.Errorf("workload %s is in the traffic manager's namespace %s, where agents are never injected", w.Key(), in.namespace)
	}
	o, err := in.get(ctx, w.WorkloadRef)
	if err != nil {
		return err
	}
	plans, err := plan(&o.tmpl.Spec, ports)
	if err != nil {
		return fmt.Errorf("%s %s cannot take an agent: %w", o.kind, w.Key(), err)
	}
	svcs, err := in.client.CoreV1().Services(w.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("services of %s: %w", w.Key(), err)
	}
	if err := byName(svcs.Items, o.tmpl.Labels, plans); err != nil {
		return fmt.Errorf("%s %s cannot take an agent: %w", o.kind, w.Key(), err)
	}
	return nil
}

// byName refuses a port that a Service selecting pods with labels targets
// by number: only a name can be taken over.
func byName(svcs []corev1.Service, podLabels map[string]string, plans []takeover) error {
	for _, svc := range svcs {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(podLabels)) {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			for _, t := range plans {
				if sp.TargetPort.StrVal == "" && targetNumber(sp) == t.app.ContainerPort {
					return fmt.Errorf("service %s targets its port %d by number (targetPort: %d), and an agent can only take over a port by name: set targetPort: %s in service %s, the container port's name",
						svc.Name, t.app.ContainerPort, t.app.ContainerPort, t.app.Name, svc.Name)
				}
			}
		}
	}
	return nil
}

// targetNumber is the container port number a Service port targets;
// without targetPort it is the Service port's own.
func targetNumber(sp corev1.ServicePort) int32 {
	if sp.TargetPort.IntVal != 0 {
		return sp.TargetPort.IntVal
	}
	return sp.Port
}

// Inject implements manager.Injector: it marks w's pod template with
// ports (joined to those it serves already), which rolls w out; a
// template marked with these ports already is left alone.
func (in *Injector) Inject(ctx context.Context, w manager.Workload, ports []uint16) error {
	if err := in.Check(ctx, w, ports); err != nil {
		return err
	}
	// Two intercepts of one workload may mark it at once: the patch is
	// conditional on what was read, and the loser reads again.
	var o object
	var all []uint16
	var changed bool
	err := retry.RetryOnConflict(retry.DefaultRetry, func() (err error) {
		if o, err = in.get(ctx, w.WorkloadRef); err != nil {
			return err
		}
		all, changed, err = in.mark(ctx, o, w, ports)
		return err
	})
	if err != nil || !changed {
		return err
	}
	in.log.Info("agent injection: workload rolls out", "workload", w.Key(), "kind", o.kind, "ports", all)
	if o.kind == KindReplicaSet {
		return in.replacePods(ctx, w.Namespace, o.selector, w.Name)
	}
	return nil
}

// mark patches o's pod template with the marks for ports and those it
// has, if it lacks one, and records the original values on the first
// mark. The patch fails with a conflict when o changed since it was read.
func (in *Injector) mark(ctx context.Context, o object, w manager.Workload, ports []uint16) ([]uint16, bool, error) {
	all := slices.Clone(ports)
	if have, ok := o.tmpl.Annotations[AnnotationPorts]; ok {
		old, err := parsePorts(have)
		if err != nil {
			return nil, false, fmt.Errorf("%s %s: %w", o.kind, w.Key(), err)
		}
		all = append(all, old...)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	marks := map[string]map[string]string{
		"labels":      {LabelAgent: "enabled"},
		"annotations": {AnnotationPorts: formatPorts(all), AnnotationWorkload: w.Name},
	}
	if o.tmpl.Labels[LabelAgent] == "enabled" && o.tmpl.Annotations[AnnotationPorts] == formatPorts(all) && o.tmpl.Annotations[AnnotationWorkload] == w.Name {
		return all, false, nil
	}
	meta := map[string]any{"resourceVersion": o.meta.ResourceVersion}
	if _, marked := o.meta.Annotations[AnnotationRestore]; !marked {
		restore, err := json.Marshal(restorePatch(o.tmpl, marks))
		if err != nil {
			return nil, false, err
		}
		meta["labels"] = map[string]string{LabelInjected: "true"}
		meta["annotations"] = map[string]string{AnnotationRestore: string(restore)}
	}
	patch := map[string]any{"metadata": meta, "spec": map[string]any{"template": map[string]any{"metadata": marks}}}
	if err := in.patch(ctx, o.kind, w.Namespace, w.Name, patch); err != nil {
		if apierrors.IsConflict(err) {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("mark the pod template of %s %s for its agent: %w", o.kind, w.Key(), err)
	}
	return all, true, nil
}

// restorePatch is the merge patch of a pod template's metadata that gives
// every key of marks its value in tmpl again: null where it had none.
func restorePatch(tmpl *corev1.PodTemplateSpec, marks map[string]map[string]string) map[string]map[string]*string {
	orig := map[string]map[string]string{"labels": tmpl.Labels, "annotations": tmpl.Annotations}
	out := map[string]map[string]*string{}
	for field, keys := range marks {
		out[field] = map[string]*string{}
		for k := range keys {
			if v, ok := orig[field][k]; ok {
				out[field][k] = &v
			} else {
				out[field][k] = nil
			}
		}
	}
	return out
}

func (in *Injector) patch(ctx context.Context, kind, namespace, name string, patch any) error {
	data, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	apps := in.client.AppsV1()
	opts := metav1.PatchOptions{FieldManager: "tether-manager"}
	switch kind {
	case KindDeployment:
		_, err = apps.Deployments(namespace).Patch(ctx, name, types.MergePatchType, data, opts)
	case KindStatefulSet:
		_, err = apps.StatefulSets(namespace).Patch(ctx, name, types.MergePatchType, data, opts)
	case KindReplicaSet:
		_, err = apps.ReplicaSets(namespace).Patch(ctx, name, types.MergePatchType, data, opts)
	}
	return err
}

// replacePods deletes the pods of ReplicaSet name, which, unlike a
// Deployment or StatefulSet, does not roll out a changed template: it
// makes new pods from the new template.
func (in *Injector) replacePods(ctx context.Context, namespace string, selector *metav1.LabelSelector, name string) error {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return fmt.Errorf("replicaset %s/%s: %w", namespace, name, err)
	}
	pods, err := in.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return fmt.Errorf("pods of replicaset %s/%s: %w", namespace, name, err)
	}
	var errs []error
	for _, p := range pods.Items {
		if ref := metav1.GetControllerOf(&p); ref == nil || ref.Kind != KindReplicaSet || ref.Name != name {
			continue
		}
		if err := in.client.CoreV1().Pods(namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("replace pod %s/%s: %w", namespace, p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveAll implements manager.Injector: every marked workload gets its
// pod template's metadata back as it was and loses its marks, so it rolls
// back to its pods of before the first intercept.
func (in *Injector) RemoveAll(ctx context.Context) error {
	_, err := RemoveAll(ctx, in.client, in.log)
	return err
}

// RemoveAll restores every workload the manager marked, in every
// namespace, with client's rights (`tether helm uninstall` uses the
// user's), and names those it restored ("Deployment shop/web").
func RemoveAll(ctx context.Context, client kubernetes.Interface, log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.Default()
	}
	list := metav1.ListOptions{LabelSelector: LabelInjected}
	apps := client.AppsV1()
	var marked []object
	ds, err := apps.Deployments("").List(ctx, list)
	if err != nil {
		return nil, fmt.Errorf("find the workloads with agents: %w", err)
	}
	for i := range ds.Items {
		d := &ds.Items[i]
		marked = append(marked, object{KindDeployment, &d.ObjectMeta, &d.Spec.Template, d.Spec.Selector})
	}
	ss, err := apps.StatefulSets("").List(ctx, list)
	if err != nil {
		return nil, fmt.Errorf("find the workloads with agents: %w", err)
	}
	for i := range ss.Items {
		s := &ss.Items[i]
		marked = append(marked, object{KindStatefulSet, &s.ObjectMeta, &s.Spec.Template, s.Spec.Selector})
	}
	rs, err := apps.ReplicaSets("").List(ctx, list)
	if err != nil {
		return nil, fmt.Errorf("find the workloads with agents: %w", err)
	}
	for i := range rs.Items {
		r := &rs.Items[i]
		marked = append(marked, object{KindReplicaSet, &r.ObjectMeta, &r.Spec.Template, r.Spec.Selector})
	}
	in := &Injector{client: client, log: log}
	var errs []error
	var restored []string
	for _, o := range marked {
		if err := in.restoreFresh(ctx, o); err != nil {
			errs = append(errs, err)
			continue
		}
		restored = append(restored, o.kind+" "+o.meta.Namespace+"/"+o.meta.Name)
	}
	return restored, errors.Join(errs...)
}

// restore patches o back, conditional on the version read.
func (in *Injector) restore(ctx context.Context, o object) error {
	key := o.meta.Namespace + "/" + o.meta.Name
	tmplMeta, err := restoreMeta(o.meta.Annotations)
	if err != nil {
		return fmt.Errorf("%s %s: %w", o.kind, key, err)
	}
	patch := map[string]any{
		"metadata": map[string]any{
			"resourceVersion": o.meta.ResourceVersion,
			"labels":          map[string]any{LabelInjected: nil},
			"annotations":     map[string]any{AnnotationRestore: nil},
		},
		"spec": map[string]any{"template": map[string]any{"metadata": tmplMeta}},
	}
	return in.patch(ctx, o.kind, o.meta.Namespace, o.meta.Name, patch)
}

// restoreMeta is the merge patch of a pod template's metadata that a
// workload with annotations gets back: its annotation AnnotationRestore,
// which the first mark recorded, and the removal of the agent repair's
// AnnotationRestartedAt, which came later and was never in the template
// before.
func restoreMeta(annotations map[string]string) (map[string]any, error) {
	meta := map[string]any{}
	if r, ok := annotations[AnnotationRestore]; ok {
		if err := json.Unmarshal([]byte(r), &meta); err != nil || meta == nil {
			return nil, fmt.Errorf("annotation %s is not a JSON object", AnnotationRestore)
		}
	}
	ann, ok := meta["annotations"].(map[string]any)
	if !ok {
		ann = map[string]any{}
		meta["annotations"] = ann
	}
	ann[AnnotationRestartedAt] = nil
	return meta, nil
}

// restoreFresh restores o, reading it again when it changed since it was
// listed (a conflict).
func (in *Injector) restoreFresh(ctx context.Context, o object) error {
	key := o.meta.Namespace + "/" + o.meta.Name
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			var err error
			if o, err = in.get(ctx, manager.WorkloadRef{Namespace: o.meta.Namespace, Name: o.meta.Name, Kind: o.kind}); err != nil {
				return err
			}
		}
		first = false
		return in.restore(ctx, o)
	})
	if err != nil {
		return fmt.Errorf("restore the pod template of %s %s: %w", o.kind, key, err)
	}
	in.log.Info("agent removed: workload rolls back", "workload", key, "kind", o.kind)
	if o.kind == KindReplicaSet {
		return in.replacePods(ctx, o.meta.Namespace, o.selector, o.meta.Name)
	}
	return nil
}

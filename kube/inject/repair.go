package inject

// Agent repair. The webhook's failurePolicy is Ignore, so a pod of a
// marked workload created while the webhook is down (a node drained, a pod
// evicted, the app crashing while the manager restarts) starts without its
// agent, and intercepts miss whatever traffic reaches that pod. Repair
// follows the pods the webhook should have changed and has those without
// an agent replaced, once the webhook is reachable, so that it injects
// their replacements.
//
// How a pod is replaced: by eviction of just that pod (policy/v1
// Eviction), as telepresence's traffic-manager does, not by a rollout
// restart of its workload. An eviction honours the workload's
// PodDisruptionBudgets, replaces only the pods that lack their agent (a
// restart replaces every pod, also those with agents) and changes nothing
// on the workload: no new ReplicaSet, no revision in its history, nothing
// for the restore on uninstall to undo. When a PodDisruptionBudget refuses
// every eviction (one replica and minAvailable: 1), a Deployment is
// restarted instead, as `kubectl rollout restart` does (a pod-template
// annotation, here AnnotationRestartedAt): its strategy (maxSurge) starts
// the new pods before it stops the old ones, which is what the budget
// protects, and the restore removes the annotation again. A StatefulSet or
// a bare ReplicaSet starts no pod before it stops one: its eviction is
// retried until the budget allows it.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// Event reasons on a repaired workload.
const (
	ReasonAgentRepaired = "AgentRepaired"
	ReasonRepairBlocked = "AgentRepairBlocked"
)

// Repair backs off per workload: a pod whose replacement starts without
// its agent again (the API server cannot reach the webhook) must not have
// its workload's pods evicted in a loop.
const (
	// firstRetry is the wait before a workload's second repair in a row;
	// each further one waits twice as long, up to maxRetry.
	firstRetry = 5 * time.Second
	maxRetry   = 5 * time.Minute
	// quietReset is how long a workload needs no repair before its next
	// one is immediate again.
	quietReset = 2 * maxRetry
)

// owner is the controller of pods lacking their agent, which repairs are
// keyed by: a ReplicaSet (of a Deployment, or bare) or a StatefulSet.
type owner struct{ kind, namespace, name string }

func (o owner) String() string { return o.kind + " " + o.namespace + "/" + o.name }

// lacksAgent says whether pod is one that repair replaces, and its owner:
// its pod template was marked (the label and the ports annotation the
// webhook reads) but it has no agent, it is neither terminating nor
// finished, it is outside the manager's namespace, and a ReplicaSet or a
// StatefulSet controls it. Whether its workload is still marked is for
// leaveAlone, with the workload read.
func lacksAgent(pod *corev1.Pod, managerNamespace string) (owner, bool) {
	if pod.Labels[LabelAgent] != "enabled" || pod.Annotations[AnnotationPorts] == "" || hasAgent(&pod.Spec) {
		return owner{}, false
	}
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.Namespace == managerNamespace {
		return owner{}, false
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil || !strings.HasPrefix(ref.APIVersion, appsv1.GroupName+"/") || (ref.Kind != KindReplicaSet && ref.Kind != KindStatefulSet) {
		return owner{}, false
	}
	return owner{ref.Kind, pod.Namespace, ref.Name}, true
}

// leaveAlone says why the pods lacking their agent of workload w are not
// replaced, or "" to replace them; warn says it is the user's to fix. rs is
// the template of the pods' ReplicaSet when w is its Deployment.
func leaveAlone(w object, rs *corev1.PodTemplateSpec) (why string, warn bool) {
	if w.tmpl.Labels[LabelAgent] != "enabled" {
		return "its pod template is not marked (the agents were removed)", false
	}
	if rs != nil && !sameTemplate(rs, w.tmpl) {
		return "its rollout replaces these pods already", false
	}
	ports, err := parsePorts(w.tmpl.Annotations[AnnotationPorts])
	if err == nil && w.tmpl.Annotations[AnnotationWorkload] == "" {
		err = fmt.Errorf("annotation %s is missing", AnnotationWorkload)
	}
	if err == nil {
		_, err = plan(&w.tmpl.Spec, ports)
	}
	if err != nil {
		return fmt.Sprintf("its pod template cannot take an agent, so new pods would lack it too: %v", err), true
	}
	return "", false
}

// sameTemplate says whether a ReplicaSet's template a is its Deployment's
// b, as the Deployment controller compares them: but for the hash label.
func sameTemplate(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return apiequality.Semantic.DeepEqual(a, b)
}

// attempts counts a workload's repairs in a row: n tried, the last at
// last, of which replaced evicted or restarted something.
type attempts struct {
	n, replaced int
	last        time.Time
}

// wait is how long the next repair waits at now.
func (a attempts) wait(now time.Time) time.Duration {
	since := now.Sub(a.last)
	if a.n == 0 || since >= quietReset {
		return 0
	}
	d := maxRetry
	if a.n <= 10 {
		d = min(firstRetry<<(a.n-1), maxRetry)
	}
	return max(d-since, 0)
}

// next is a after a repair at now.
func (a attempts) next(now time.Time) attempts {
	if a.n == 0 || now.Sub(a.last) >= quietReset {
		return attempts{n: 1, last: now}
	}
	return attempts{n: a.n + 1, replaced: a.replaced, last: now}
}

// repairer is Repair's state, alive until Repair returns.
type repairer struct {
	in       *Injector
	clock    clock.WithTicker
	pods     cache.Indexer
	queue    workqueue.TypedDelayingInterface[owner]
	recorder record.EventRecorder
	// attempts of each owner: the worker goroutine's only.
	attempts map[owner]attempts
}

// Repair replaces the pods of marked workloads that run without their
// agent, until ctx ends: those there when it starts and those that appear
// later. It follows only the pods labelled for the webhook (an informer on
// that label: the API server sends nothing else) and reads a workload only
// when one of its pods lacks its agent. It replaces nothing before
// reachable is closed: until the API server reaches the webhook, a
// replacement would start without its agent again. It logs one line and
// records an event on the workload per repair.
func (in *Injector) Repair(ctx context.Context, reachable <-chan struct{}) error {
	in.log.Info("agent repair started: following the pods of intercepted workloads", "selector", LabelAgent+"=enabled")
	defer in.log.Info("agent repair stopped")
	r := &repairer{in: in, clock: clock.RealClock{}, attempts: map[owner]attempts{}}
	factory := informers.NewSharedInformerFactoryWithOptions(in.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelAgent + "=enabled" }),
		informers.WithTransform(stripManagedFields))
	informer := factory.Core().V1().Pods().Informer()
	r.pods = informer.GetIndexer()
	r.queue = workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[owner]{Clock: r.clock})
	defer r.queue.ShutDown()
	enqueue := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok {
			if o, ok := lacksAgent(pod, in.namespace); ok {
				r.queue.Add(o)
			}
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return fmt.Errorf("agent repair: watch the pods of intercepted workloads: %w", err)
	}
	// Events go to each workload's namespace.
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: in.client.CoreV1().Events("")})
	r.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "traffic-manager"})

	factory.Start(ctx.Done())
	defer factory.Shutdown()
	select {
	case <-reachable:
	case <-ctx.Done():
		return nil
	}
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		r.queue.ShutDown()
	}()
	defer func() { <-stopped }()
	for {
		key, shutdown := r.queue.Get()
		if shutdown {
			return nil
		}
		if d := r.repair(ctx, key); d > 0 {
			r.queue.AddAfter(key, d)
		}
		r.queue.Done(key)
	}
}

// stripManagedFields keeps the informer's pods small: repair never reads
// who wrote which field.
func stripManagedFields(obj any) (any, error) {
	if pod, ok := obj.(*corev1.Pod); ok {
		pod.ManagedFields = nil
	}
	return obj, nil
}

// lacking are the pods of o that lack their agent, as the informer knows
// them.
func (r *repairer) lacking(o owner) []*corev1.Pod {
	objs, err := r.pods.ByIndex(cache.NamespaceIndex, o.namespace)
	if err != nil {
		return nil
	}
	var out []*corev1.Pod
	for _, obj := range objs {
		if pod, ok := obj.(*corev1.Pod); ok {
			if po, ok := lacksAgent(pod, r.in.namespace); ok && po == o {
				out = append(out, pod)
			}
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// errNotOurs: a ReplicaSet of a controller Tether does not inject into.
var errNotOurs = errors.New("a ReplicaSet of another controller than a Deployment")

// workload is what a repair acts on: the workload of o's pods, as object
// and as the API object events are recorded on, and the template of the
// pods' ReplicaSet when the workload is its Deployment.
func (r *repairer) workload(ctx context.Context, o owner) (object, runtime.Object, *corev1.PodTemplateSpec, error) {
	apps := r.in.client.AppsV1()
	if o.kind == KindStatefulSet {
		s, err := apps.StatefulSets(o.namespace).Get(ctx, o.name, metav1.GetOptions{})
		if err != nil {
			return object{}, nil, nil, err
		}
		return object{KindStatefulSet, &s.ObjectMeta, &s.Spec.Template, s.Spec.Selector}, s, nil, nil
	}
	rs, err := apps.ReplicaSets(o.namespace).Get(ctx, o.name, metav1.GetOptions{})
	if err != nil {
		return object{}, nil, nil, err
	}
	ref := metav1.GetControllerOf(rs)
	if ref == nil {
		return object{KindReplicaSet, &rs.ObjectMeta, &rs.Spec.Template, rs.Spec.Selector}, rs, nil, nil
	}
	if ref.Kind != KindDeployment || !strings.HasPrefix(ref.APIVersion, appsv1.GroupName+"/") {
		return object{}, nil, nil, errNotOurs
	}
	d, err := apps.Deployments(o.namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return object{}, nil, nil, err
	}
	return object{KindDeployment, &d.ObjectMeta, &d.Spec.Template, d.Spec.Selector}, d, &rs.Spec.Template, nil
}

// repair replaces o's pods that lack their agent, and says when to look
// at o again (0: when one of its pods changes).
func (r *repairer) repair(ctx context.Context, o owner) time.Duration {
	log := r.in.log
	pods := r.lacking(o)
	if len(pods) == 0 {
		return 0
	}
	if d := r.attempts[o].wait(r.clock.Now()); d > 0 {
		return d
	}
	w, obj, rsTmpl, err := r.workload(ctx, o)
	switch {
	case apierrors.IsNotFound(err) || errors.Is(err, errNotOurs):
		return 0 // its pods go with it, or are not Tether's
	case err != nil:
		r.note(o)
		log.Warn("agent repair: cannot read the workload of pods without their agent", "owner", o.String(), "error", err)
		return r.attempts[o].wait(r.clock.Now())
	}
	log = log.With("workload", w.meta.Namespace+"/"+w.meta.Name, "kind", w.kind)
	why, warn := leaveAlone(w, rsTmpl)
	if why != "" && !warn {
		log.Debug("agent repair: pods without their agent left alone", "why", why)
		return 0
	}
	r.note(o)
	if warn {
		log.Warn("agent repair: pods without their agent left alone", "why", why)
		r.recorder.Eventf(obj, corev1.EventTypeWarning, ReasonRepairBlocked, "pods without the tether agent are not replaced: %s", why)
		return 0
	}
	evicted, blocked, err := r.evict(ctx, pods)
	retry := r.attempts[o].wait(r.clock.Now())
	restarted := false
	if len(evicted) == 0 && len(blocked) > 0 && w.kind == KindDeployment {
		if rerr := r.restart(ctx, w); rerr != nil {
			err = errors.Join(err, rerr)
		} else {
			restarted = true
			log.Info("agent repair: rollout restart, since a PodDisruptionBudget refused to evict the pods that started without their agent", "pods", blocked)
			r.recorder.Eventf(obj, corev1.EventTypeNormal, ReasonAgentRepaired, "rollout restart: %s started without the tether agent (the injector was down), and a PodDisruptionBudget refused to evict them", strings.Join(blocked, ", "))
			blocked = nil
		}
	}
	if len(evicted) > 0 || restarted {
		a := r.attempts[o]
		a.replaced++
		r.attempts[o] = a
	}
	switch {
	case len(evicted) > 0 && r.attempts[o].replaced > 1:
		log.Warn("agent repair again: pods that started without their agent evicted; is the webhook reachable from the API server?", "pods", evicted,
			"blocked_by_disruption_budget", blocked, "repairs_in_a_row", r.attempts[o].replaced)
	case len(evicted) > 0:
		log.Info("agent repair: pods that started without their agent evicted; their replacements get it", "pods", evicted, "blocked_by_disruption_budget", blocked)
	case len(blocked) > 0:
		log.Warn("agent repair waits: a PodDisruptionBudget refuses to evict the pods that started without their agent", "pods", blocked, "retry_in", retry)
		r.recorder.Eventf(obj, corev1.EventTypeWarning, ReasonRepairBlocked, "%s started without the tether agent (the injector was down); a PodDisruptionBudget refuses to evict them, retrying", strings.Join(blocked, ", "))
	}
	if len(evicted) > 0 {
		// Blocked ones wait for the replacements, which the budget
		// counts once they are ready.
		r.recorder.Eventf(obj, corev1.EventTypeNormal, ReasonAgentRepaired, "evicted %s, which started without the tether agent (the injector was down): their replacements get it", strings.Join(evicted, ", "))
	}
	if err != nil {
		log.Warn("agent repair failed", "error", err, "retry_in", retry)
		return retry
	}
	if len(blocked) > 0 {
		return retry
	}
	return 0
}

// evict evicts pods, and names those evicted and those a
// PodDisruptionBudget kept.
func (r *repairer) evict(ctx context.Context, pods []*corev1.Pod) (evicted, blocked []string, err error) {
	var errs []error
	for _, p := range pods {
		err := r.in.client.CoreV1().Pods(p.Namespace).EvictV1(ctx, &policyv1.Eviction{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
			// This pod, not a replacement of the same name (a
			// StatefulSet's).
			DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}},
		})
		switch {
		case err == nil:
			evicted = append(evicted, p.Name)
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			// gone already
		case apierrors.IsTooManyRequests(err):
			// A PodDisruptionBudget allows no disruption now.
			blocked = append(blocked, p.Name)
		default:
			errs = append(errs, fmt.Errorf("evict pod %s: %w", p.Name, err))
		}
	}
	return evicted, blocked, errors.Join(errs...)
}

// note counts a repair of o now, and forgets workloads quiet for long.
func (r *repairer) note(o owner) {
	now := r.clock.Now()
	r.attempts[o] = r.attempts[o].next(now)
	for k, a := range r.attempts {
		if now.Sub(a.last) >= quietReset {
			delete(r.attempts, k)
		}
	}
}

// restart rolls Deployment w out, as `kubectl rollout restart` does; the
// patch is conditional on the version read, so a Deployment restored
// meanwhile is not restarted.
func (r *repairer) restart(ctx context.Context, w object) error {
	patch := map[string]any{
		"metadata": map[string]any{"resourceVersion": w.meta.ResourceVersion},
		"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
			"annotations": map[string]string{AnnotationRestartedAt: r.clock.Now().UTC().Format(time.RFC3339)},
		}}},
	}
	if err := r.in.patch(ctx, w.kind, w.meta.Namespace, w.meta.Name, patch); err != nil {
		return fmt.Errorf("rollout restart of %s %s/%s: %w", w.kind, w.meta.Namespace, w.meta.Name, err)
	}
	return nil
}

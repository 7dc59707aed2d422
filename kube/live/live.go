// Package live keeps the traffic manager's live rules in step with its
// configmap (traffic-manager in the manager's namespace): an informer
// scoped to that one object feeds each new version to the manager's
// SetRules. A bad value is refused with a log line and a Warning Event on
// the configmap naming the key; the old values stay.
package live

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/tether-dev/tether/manager"
)

// EventReason is the reason of the Event a refused value records.
const EventReason = "InvalidTetherValue"

// eventTimeout bounds recording one Event.
const eventTimeout = 10 * time.Second

// Watcher applies the configmap's values through set, the manager's
// SetRules.
type Watcher struct {
	client          kubernetes.Interface
	namespace, name string
	set             func(manager.Rules, manager.Limits) error
	log             *slog.Logger
}

// New returns a Watcher of configmap name in namespace.
func New(client kubernetes.Interface, namespace, name string, set func(manager.Rules, manager.Limits) error, log *slog.Logger) *Watcher {
	return &Watcher{client: client, namespace: namespace, name: name, set: set,
		log: log.With("component", "configmap", "configmap", namespace+"/"+name)}
}

// Run watches until ctx ends and returns when the informer's goroutines
// have. An error means the watch could not start.
func (w *Watcher) Run(ctx context.Context) error {
	f := informers.NewSharedInformerFactoryWithOptions(w.client, 0, informers.WithNamespace(w.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", w.name).String()
		}))
	defer f.Shutdown()
	inf := f.Core().V1().ConfigMaps().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.apply(ctx, obj) },
		UpdateFunc: func(_, obj any) { w.apply(ctx, obj) },
		DeleteFunc: func(any) { w.log.Warn("configmap deleted: the rules stay as they are") },
	}); err != nil {
		return fmt.Errorf("watch configmap %s/%s: %w", w.namespace, w.name, err)
	}
	w.log.Info("watching the configmap for rule changes")
	f.Start(ctx.Done())
	<-ctx.Done()
	w.log.Info("configmap watch stopped")
	return nil
}

// apply parses a version of the configmap and hands it to set; a refusal
// is logged and recorded as an Event.
func (w *Watcher) apply(ctx context.Context, obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return
	}
	r, l, err := manager.ParseLive(cm.Data)
	if err == nil {
		err = w.set(r, l)
	}
	if err == nil {
		w.log.Info("rules from the configmap applied", "resource_version", cm.ResourceVersion)
		return
	}
	w.log.Warn("configmap values refused: the old values stay", "resource_version", cm.ResourceVersion, "error", err)
	w.event(ctx, cm, err)
}

func (w *Watcher) event(ctx context.Context, cm *corev1.ConfigMap, refusal error) {
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: cm.Name + ".", Namespace: cm.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: cm.Namespace, Name: cm.Name,
			UID: cm.UID, ResourceVersion: cm.ResourceVersion},
		Reason:  EventReason,
		Message: "refused, the old values stay: " + refusal.Error(),
		Type:    corev1.EventTypeWarning,
		Source:  corev1.EventSource{Component: "tether-manager"},
		Count:   1, FirstTimestamp: now, LastTimestamp: now,
	}
	if _, err := w.client.CoreV1().Events(cm.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil && ctx.Err() == nil {
		w.log.Warn("recording the refusal as an Event failed", "error", err)
	}
}

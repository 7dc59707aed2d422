// Package kube adapts the traffic manager to Kubernetes with client-go: it
// implements what the manager's rules ask for (here: their live values)
// from the cluster. The manager never imports it.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/tether-dev/tether/manager"
)

// ConfigMapName is the configmap of the manager's rules, in its namespace
// (manager.namespace). RBAC on it also decides who may revoke.
const ConfigMapName = "traffic-manager"

// RulesSetter is what WatchRules changes: the manager's SetRules.
type RulesSetter interface {
	SetRules(manager.Rules, manager.Limits) error
}

// syncTimeout bounds how long WatchRules waits for the first list.
const syncTimeout = 30 * time.Second

// Event reasons on the configmap.
const (
	ReasonApplied = "RulesApplied"
	ReasonInvalid = "InvalidRules"
)

// WatchRules applies the configmap's values to set whenever the configmap
// appears or changes, until ctx ends. A bad value is refused as a whole
// (manager.ParseLive names each bad key): the manager keeps its old
// values, and the refusal is logged and recorded as a Warning event on the
// configmap, where `kubectl describe configmap traffic-manager` shows it.
// A deleted configmap changes nothing. It returns once the informer has
// synced (an error after syncTimeout: the API server is unreachable or
// RBAC refuses the watch) or ctx ended; the informer and the event
// broadcaster stop with ctx, and the returned function waits for them.
func WatchRules(ctx context.Context, cs kubernetes.Interface, namespace string, set RulesSetter, log *slog.Logger) (wait func(), err error) {
	log = log.With("component", "rules", "configmap", namespace+"/"+ConfigMapName)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events(namespace)})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "traffic-manager"})

	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			// RBAC names the one configmap (resourceNames): list and watch
			// work only when selecting it by name.
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ConfigMapName).String()
		}))
	var last map[string]string // the informer's handler goroutine only
	apply := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok || cm.Name != ConfigMapName {
			return
		}
		if last != nil && maps.Equal(last, cm.Data) {
			return // a resync or a change of labels only
		}
		last = maps.Clone(cm.Data)
		r, l, err := manager.ParseLive(cm.Data)
		if err == nil {
			err = set.SetRules(r, l)
		}
		if err != nil {
			log.Error("configmap refused: the rules stay as they were", "error", err)
			recorder.Eventf(cm, corev1.EventTypeWarning, ReasonInvalid, "refused, the rules stay as they were: %v", err)
			return
		}
		log.Info("rules from the configmap applied", "rules", fmt.Sprintf("%+v", r), "limits", fmt.Sprintf("%+v", l))
		recorder.Eventf(cm, corev1.EventTypeNormal, ReasonApplied, "grpc.connectionTTL=%s intercept.inactiveBlockTimeout=%s activity.reportInterval=%s",
			r.ConnectionTTL, r.InactiveBlockTimeout, r.ReportInterval)
	}
	informer := factory.Core().V1().ConfigMaps().Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    apply,
		UpdateFunc: func(_, obj any) { apply(obj) },
		DeleteFunc: func(any) { log.Warn("configmap deleted: the rules stay as they were") },
	}); err != nil {
		broadcaster.Shutdown()
		return nil, fmt.Errorf("watch configmap %s/%s: %w", namespace, ConfigMapName, err)
	}
	log.Info("watching the configmap for rules")
	factory.Start(ctx.Done())
	wait = func() {
		<-ctx.Done()
		factory.Shutdown()
		broadcaster.Shutdown()
		log.Info("stopped watching the configmap")
	}
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), informer.HasSynced) {
		factory.Shutdown()
		broadcaster.Shutdown()
		return nil, fmt.Errorf("cannot watch configmap %s/%s within %s: is the API server reachable, and does the manager's Role grant get, list and watch on it?", namespace, ConfigMapName, syncTimeout)
	}
	return wait, nil
}

package inject

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// markedTemplate is web's pod template as Inject leaves it.
func markedTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      map[string]string{"app": "web", LabelAgent: "enabled"},
			Annotations: map[string]string{AnnotationPorts: "8080", AnnotationWorkload: "web"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
	}
}

// podOf is a running pod of tmpl controlled by kind name.
func podOf(tmpl corev1.PodTemplateSpec, kind, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-x1", Namespace: "shop", Labels: tmpl.Labels, Annotations: tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, Controller: ptr.To(true)}}},
		Spec:   *tmpl.Spec.DeepCopy(),
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

// Which pods the repair replaces: those the webhook should have given an
// agent and did not, while they live.
func TestLacksAgent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pod   func(*corev1.Pod)
		want  bool
		owner owner
	}{
		{"a Deployment's pod without its agent", func(*corev1.Pod) {}, true, owner{KindReplicaSet, "shop", "web-5d8f"}},
		{"a StatefulSet's", func(p *corev1.Pod) { p.OwnerReferences[0].Kind, p.OwnerReferences[0].Name = KindStatefulSet, "db" }, true, owner{KindStatefulSet, "shop", "db"}},
		{"with its agent", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ContainerName})
		}, false, owner{}},
		{"with the agent of a second port only", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ContainerName + "-9090"})
		}, false, owner{}},
		{"of an unmarked template", func(p *corev1.Pod) { delete(p.Labels, LabelAgent) }, false, owner{}},
		{"labelled but without ports", func(p *corev1.Pod) { delete(p.Annotations, AnnotationPorts) }, false, owner{}},
		{"terminating", func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)} }, false, owner{}},
		{"failed (evicted by the kubelet)", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }, false, owner{}},
		{"succeeded", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, false, owner{}},
		{"pending", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }, true, owner{KindReplicaSet, "shop", "web-5d8f"}},
		{"in the manager's namespace", func(p *corev1.Pod) { p.Namespace = "tether" }, false, owner{}},
		{"without a controller", func(p *corev1.Pod) { p.OwnerReferences = nil }, false, owner{}},
		{"of a Job", func(p *corev1.Pod) { p.OwnerReferences[0].APIVersion, p.OwnerReferences[0].Kind = "batch/v1", "Job" }, false, owner{}},
		{"of another group's ReplicaSet", func(p *corev1.Pod) { p.OwnerReferences[0].APIVersion = "example.com/v1" }, false, owner{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := podOf(markedTemplate(), KindReplicaSet, "web-5d8f")
			pod.Labels, pod.Annotations = clone(pod.Labels), clone(pod.Annotations)
			tc.pod(pod)
			got, ok := lacksAgent(pod, "tether")
			if ok != tc.want || got != tc.owner {
				t.Fatalf("lacksAgent = %v, %v; want %v, %v", got, ok, tc.owner, tc.want)
			}
		})
	}
}

func clone(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Which workloads' pods the repair leaves alone: those no longer marked,
// those a rollout replaces anyway, and those whose template cannot take an
// agent (a replacement would lack it too).
func TestLeaveAlone(t *testing.T) {
	deployment := func(change func(*corev1.PodTemplateSpec)) object {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: appsv1.DeploymentSpec{Template: markedTemplate()}}
		change(&d.Spec.Template)
		return object{KindDeployment, &d.ObjectMeta, &d.Spec.Template, d.Spec.Selector}
	}
	rs := markedTemplate()
	rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "5d8f"
	for _, tc := range []struct {
		name     string
		workload object
		rs       *corev1.PodTemplateSpec
		want     string
		warn     bool
	}{
		{"a marked Deployment, the pods of its current ReplicaSet", deployment(func(*corev1.PodTemplateSpec) {}), &rs, "", false},
		{"a marked StatefulSet", object{kind: KindStatefulSet, tmpl: ptr.To(markedTemplate())}, nil, "", false},
		{"a marked bare ReplicaSet", object{kind: KindReplicaSet, tmpl: &rs}, nil, "", false},
		{"a Deployment restored (agents removed)", deployment(func(t *corev1.PodTemplateSpec) {
			delete(t.Labels, LabelAgent)
			t.Annotations = nil
		}), &rs, "not marked", false},
		{"a Deployment rolling out another template", deployment(func(t *corev1.PodTemplateSpec) {
			t.Annotations[AnnotationRestartedAt] = "2026-01-02T03:04:05Z"
		}), &rs, "rollout replaces these pods", false},
		{"a template whose port went away", deployment(func(t *corev1.PodTemplateSpec) {
			t.Spec.Containers[0].Ports = nil
		}), nil, "cannot take an agent", true},
		{"a template without the workload annotation", deployment(func(t *corev1.PodTemplateSpec) {
			delete(t.Annotations, AnnotationWorkload)
		}), nil, "cannot take an agent", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			why, warn := leaveAlone(tc.workload, tc.rs)
			if (tc.want == "") != (why == "") || !strings.Contains(why, tc.want) || warn != tc.warn {
				t.Fatalf("leaveAlone = %q, %v; want %q, %v", why, warn, tc.want, tc.warn)
			}
		})
	}
}

// Repairs of one workload in a row back off, up to maxRetry; a workload
// quiet for quietReset starts again with none.
func TestRepairBackoff(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	var a attempts
	if d := a.wait(t0); d != 0 {
		t.Fatalf("first repair waits %s", d)
	}
	now := t0
	var waits []time.Duration
	for range 9 {
		a = a.next(now)
		d := a.wait(now)
		waits = append(waits, d)
		now = now.Add(d)
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, maxRetry, maxRetry, maxRetry}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	if d := a.wait(now); d != 0 {
		t.Fatalf("waits %s when due", d)
	}
	if d := a.wait(a.last.Add(time.Minute)); d != maxRetry-time.Minute {
		t.Fatalf("a minute after a repair waits %s, want %s", d, maxRetry-time.Minute)
	}
	if d := a.wait(a.last.Add(quietReset)); d != 0 {
		t.Fatalf("after %s quiet waits %s", quietReset, d)
	}
	if b := a.next(a.last.Add(quietReset)); b.n != 1 {
		t.Fatalf("after %s quiet the count is %d, want 1", quietReset, b.n)
	}
}

// The restore removes the repair's restart annotation too, and keeps the
// recorded original values.
func TestRestoreMeta(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        string
	}{
		{"recorded", map[string]string{AnnotationRestore: `{"annotations":{"tether.dev/agent-ports":null,"tether.dev/workload":null},"labels":{"tether.dev/agent":"off"}}`},
			`{"annotations":{"tether.dev/agent-ports":null,"tether.dev/restartedAt":null,"tether.dev/workload":null},"labels":{"tether.dev/agent":"off"}}`},
		{"nothing recorded", nil, `{"annotations":{"tether.dev/restartedAt":null}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := restoreMeta(tc.annotations)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(m)
			if string(b) != tc.want {
				t.Fatalf("restore %s, want %s", b, tc.want)
			}
		})
	}
	for _, bad := range []string{"not json", "null", `"a string"`} {
		if _, err := restoreMeta(map[string]string{AnnotationRestore: bad}); err == nil {
			t.Errorf("restore of %q: no error", bad)
		}
	}
}

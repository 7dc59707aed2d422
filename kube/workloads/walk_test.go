package workloads

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tether-dev/tether/manager"
)

// memObjects is an in-memory Objects: metadata by "kind/namespace/name".
type memObjects map[string]*metav1.ObjectMeta

func (m memObjects) get(kind, ns, name string) (metav1.Object, error) {
	if o, ok := m[kind+"/"+ns+"/"+name]; ok {
		return o, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: strings.ToLower(kind) + "s"}, name)
}

func (m memObjects) Pod(_ context.Context, ns, name string) (metav1.Object, error) {
	return m.get("pod", ns, name)
}

func (m memObjects) ReplicaSet(_ context.Context, ns, name string) (metav1.Object, error) {
	return m.get("replicaset", ns, name)
}

func owned(name, uid string, owners ...metav1.OwnerReference) *metav1.ObjectMeta {
	return &metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID(uid), OwnerReferences: owners}
}

func controller(apiVersion, kind, name, uid string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID(uid), Controller: &yes}
}

// TestOwnerWorkload: the owner chain from a pod to the workload its agent
// serves, and the refusals for pods of no interceptable workload.
func TestOwnerWorkload(t *testing.T) {
	notController := controller("apps/v1", "ReplicaSet", "web-5d9f", "rs-1")
	notController.Controller = nil
	objs := memObjects{
		"pod/shop/web-5d9f-abcde":  owned("web-5d9f-abcde", "p-1", controller("apps/v1", "ReplicaSet", "web-5d9f", "rs-1")),
		"replicaset/shop/web-5d9f": owned("web-5d9f", "rs-1", controller("apps/v1", "Deployment", "web", "d-1")),
		"pod/shop/db-0":            owned("db-0", "p-2", controller("apps/v1", "StatefulSet", "db", "s-1")),
		"pod/shop/bare-xyz":        owned("bare-xyz", "p-3", controller("apps/v1", "ReplicaSet", "bare", "rs-2")),
		"replicaset/shop/bare":     owned("bare", "rs-2"),
		"pod/shop/lonely":          owned("lonely", "p-4"),
		"pod/shop/only-owner":      owned("only-owner", "p-5", notController),
		"pod/shop/logs-x":          owned("logs-x", "p-6", controller("apps/v1", "DaemonSet", "logs", "ds-1")),
		"pod/shop/job-x":           owned("job-x", "p-7", controller("batch/v1", "Job", "migrate", "j-1")),
		"pod/shop/orphan-abc":      owned("orphan-abc", "p-8", controller("apps/v1", "ReplicaSet", "orphan", "rs-3")),
		"pod/shop/replaced-rs-abc": owned("replaced-rs-abc", "p-9", controller("apps/v1", "ReplicaSet", "replaced", "rs-old")),
		"replicaset/shop/replaced": owned("replaced", "rs-new"),
		"pod/shop/fake-set":        owned("fake-set", "p-10", controller("example.com/v1", "StatefulSet", "fake", "x-1")),
	}
	for _, tc := range []struct {
		name, pod, uid string
		want           manager.WorkloadRef
		err            string
	}{
		{"deployment's pod", "web-5d9f-abcde", "p-1", manager.WorkloadRef{Namespace: "shop", Name: "web", Kind: "Deployment"}, ""},
		{"statefulset's pod", "db-0", "p-2", manager.WorkloadRef{Namespace: "shop", Name: "db", Kind: "StatefulSet"}, ""},
		{"bare replicaset's pod", "bare-xyz", "p-3", manager.WorkloadRef{Namespace: "shop", Name: "bare", Kind: "ReplicaSet"}, ""},
		{"uid of another pod", "web-5d9f-abcde", "p-old", manager.WorkloadRef{}, "pod shop/web-5d9f-abcde is uid p-1 now, not the token's p-old (the pod was replaced)"},
		{"gone pod", "gone", "p-0", manager.WorkloadRef{}, `pod shop/gone: pods "gone" not found`},
		{"no owner", "lonely", "p-4", manager.WorkloadRef{}, "pod shop/lonely has no controller"},
		{"owner that is no controller", "only-owner", "p-5", manager.WorkloadRef{}, "pod shop/only-owner has no controller"},
		{"daemonset", "logs-x", "p-6", manager.WorkloadRef{}, "pod shop/logs-x is controlled by DaemonSet logs, which tether does not intercept"},
		{"job", "job-x", "p-7", manager.WorkloadRef{}, "is controlled by Job migrate"},
		{"replicaset gone", "orphan-abc", "p-8", manager.WorkloadRef{}, `replicaset shop/orphan of pod orphan-abc: replicasets "orphan" not found`},
		{"replicaset replaced", "replaced-rs-abc", "p-9", manager.WorkloadRef{}, "pod shop/replaced-rs-abc's replicaset replaced was replaced"},
		{"a StatefulSet of another group", "fake-set", "p-10", manager.WorkloadRef{}, "is controlled by StatefulSet fake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := OwnerWorkload(context.Background(), objs, "shop", tc.pod, tc.uid)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("OwnerWorkload(%s) = %v, %v; want an error containing %q", tc.pod, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("OwnerWorkload(%s) = %v, %v; want %v", tc.pod, got, err, tc.want)
			}
		})
	}
	_, err := OwnerWorkload(context.Background(), objs, "shop", "logs-x", "p-6")
	if !errors.Is(err, ErrNotAWorkloadPod) {
		t.Fatalf("a DaemonSet's pod: %v, want ErrNotAWorkloadPod", err)
	}
}

// TestPorts: the container ports that Services selecting the pod
// template target, by name or number, with the Service ports that reach
// them.
func TestPorts(t *testing.T) {
	pod := &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "tier": "front"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
			{Name: "sidecar", Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9100}}},
		}},
	}
	svc := func(name string, selector map[string]string, ports ...corev1.ServicePort) corev1.Service {
		return corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Selector: selector, Ports: ports}}
	}
	port := func(p int32, target intstr.IntOrString) corev1.ServicePort {
		return corev1.ServicePort{Port: p, TargetPort: target}
	}
	web := map[string]string{"app": "web"}
	for _, tc := range []struct {
		name string
		svcs []corev1.Service
		want string
	}{
		{"named targetPort", []corev1.Service{svc("web", web, port(80, intstr.FromString("http")))}, "8080/http/app[web:80]"},
		{"numeric targetPort of a declared port", []corev1.Service{svc("web", web, port(80, intstr.FromInt32(8080)))}, "8080/http/app[web:80]"},
		{"numeric targetPort nobody declares", []corev1.Service{svc("web", web, port(81, intstr.FromInt32(7070)))}, "7070//[web:81]"},
		{"no targetPort: the Service's port", []corev1.Service{svc("metrics", web, port(9100, intstr.IntOrString{}))}, "9100/metrics/sidecar[metrics:9100]"},
		{"a name no container has", []corev1.Service{svc("web", web, port(80, intstr.FromString("grpc")))}, ""},
		{"two Services, one port", []corev1.Service{
			svc("web", web, port(80, intstr.FromString("http"))),
			svc("web-alt", map[string]string{"tier": "front"}, port(8080, intstr.FromInt32(8080))),
		}, "8080/http/app[web:80 web-alt:8080]"},
		{"other selector", []corev1.Service{svc("api", map[string]string{"app": "api"}, port(80, intstr.FromString("http")))}, ""},
		{"selector wider than the labels", []corev1.Service{svc("web", map[string]string{"app": "web", "v": "2"}, port(80, intstr.FromString("http")))}, ""},
		{"no selector", []corev1.Service{svc("external", nil, port(80, intstr.FromInt32(8080)))}, ""},
		{"UDP", []corev1.Service{svc("dns", web, corev1.ServicePort{Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")})}, ""},
		{"sorted", []corev1.Service{svc("all", web, port(9100, intstr.FromString("metrics")), port(80, intstr.FromString("http")))},
			"8080/http/app[all:80] 9100/metrics/sidecar[all:9100]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range Ports(pod, tc.svcs) {
				via := make([]string, 0, len(p.Via))
				for _, v := range p.Via {
					via = append(via, v.String())
				}
				got = append(got, fmt.Sprintf("%d/%s/%s%v", p.Port, p.Name, p.Container, via))
			}
			if strings.Join(got, " ") != tc.want {
				t.Fatalf("Ports = %q, want %q", strings.Join(got, " "), tc.want)
			}
		})
	}
}

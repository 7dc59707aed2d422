package inject

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

var testAgent = Agent{Image: "tether.local/tether:dev", PullPolicy: corev1.PullNever, Manager: "traffic-manager.tether.svc:8081"}

func appPod(ports string, containerPorts ...corev1.ContainerPort) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Labels: map[string]string{"app": "web", LabelAgent: "enabled"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "sidecar", Image: "log:1"},
			{Name: "app", Image: "web:1", Ports: containerPorts},
		}},
	}
	if ports != "" {
		pod.Annotations = map[string]string{AnnotationPorts: ports, AnnotationWorkload: "web"}
	}
	return pod
}

// mutated applies the webhook's patch to pod as the API server would.
func mutated(t *testing.T, pod *corev1.Pod, ops []PatchOp) *corev1.Pod {
	t.Helper()
	doc, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		t.Fatalf("not a JSON patch: %v\n%s", err, raw)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("patch does not apply: %v\n%s", err, raw)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func container(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// agentPort is what the webhook should make of one app port.
type agentPort struct {
	container string // the agent container
	appName   string // the app port's original name, now the agent's
	app       int32
	agent     int32
	renamed   string // the app port's new name
}

func TestMutate(t *testing.T) {
	http := corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}
	metrics := corev1.ContainerPort{Name: "metrics", ContainerPort: 9900}
	admin := corev1.ContainerPort{Name: "admin", ContainerPort: 9090}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		want    []agentPort
		noPatch bool
		err     string
	}{
		{name: "named port taken over", pod: appPod("8080", http),
			want: []agentPort{{ContainerName, "http", 8080, 9900, "tx-http"}}},
		{name: "two ports, agent numbers skip the pod's own", pod: appPod("9090,8080", http, metrics, admin),
			want: []agentPort{{ContainerName, "http", 8080, 9901, "tx-http"}, {ContainerName + "-9090", "admin", 9090, 9902, "tx-admin"}}},
		{name: "long port name truncated to 15", pod: appPod("8080", corev1.ContainerPort{Name: "very-long-name1", ContainerPort: 8080}),
			want: []agentPort{{ContainerName, "very-long-name1", 8080, 9900, "tx-very-long-na"}}},
		{name: "not marked: no patch", pod: appPod("", http), noPatch: true},
		{name: "agent there already: no patch", pod: func() *corev1.Pod {
			p := appPod("8080", http)
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ContainerName})
			return p
		}(), noPatch: true},
		{name: "unnamed port refused", pod: appPod("8080", corev1.ContainerPort{ContainerPort: 8080}), err: "port 8080 has no name"},
		{name: "port in no container refused", pod: appPod("7000", http), err: "no container of its pod template declares TCP port 7000"},
		{name: "UDP port is not the TCP port", pod: appPod("8080", corev1.ContainerPort{Name: "dns", ContainerPort: 8080, Protocol: corev1.ProtocolUDP}), err: "declares TCP port 8080"},
		{name: "hostNetwork refused", pod: func() *corev1.Pod {
			p := appPod("8080", http)
			p.Spec.HostNetwork = true
			return p
		}(), err: "hostNetwork"},
		{name: "renamed name taken refused", pod: appPod("8080", http, corev1.ContainerPort{Name: "tx-http", ContainerPort: 8081}), err: "would be renamed tx-http"},
		{name: "bad annotation refused", pod: appPod("80x", http), err: "is not a list of ports"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := testAgent.Mutate(tc.pod, "shop")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.noPatch {
				if len(ops) != 0 {
					t.Fatalf("patched: %+v", ops)
				}
				return
			}
			got := mutated(t, tc.pod, ops)
			app := container(got, "app")
			if len(got.Spec.Containers) != 2+len(tc.want) {
				t.Fatalf("%d containers, want %d", len(got.Spec.Containers), 2+len(tc.want))
			}
			for _, w := range tc.want {
				var renamed *corev1.ContainerPort
				for i, p := range app.Ports {
					if p.ContainerPort == w.app {
						renamed = &app.Ports[i]
					}
				}
				if renamed == nil || renamed.Name != w.renamed {
					t.Errorf("app port %d: %+v, want it named %s", w.app, renamed, w.renamed)
				}
				a := container(got, w.container)
				if a == nil {
					t.Fatalf("no container %s", w.container)
				}
				checkAgent(t, a, w)
			}
			vols := got.Spec.Volumes
			if len(vols) != 1 || vols[0].Projected == nil || vols[0].Projected.Sources[0].ServiceAccountToken.Audience != TokenAudience ||
				*vols[0].Projected.Sources[0].ServiceAccountToken.ExpirationSeconds != 3600 {
				t.Fatalf("volumes %+v", vols)
			}
			// The token is the agent's only: no other container mounts it.
			for _, c := range got.Spec.Containers {
				if !strings.HasPrefix(c.Name, ContainerName) && len(c.VolumeMounts) > 0 {
					t.Errorf("container %s mounts %+v", c.Name, c.VolumeMounts)
				}
			}
			// The webhook's patch is idempotent: a pod that has its
			// agent is left alone.
			if again, err := testAgent.Mutate(got, "shop"); err != nil || len(again) != 0 {
				t.Fatalf("second mutation: %+v %v", again, err)
			}
		})
	}
}

func checkAgent(t *testing.T, a *corev1.Container, w agentPort) {
	t.Helper()
	app := strconv.Itoa(int(w.app))
	wantArgs := []string{"agent", "--manager", testAgent.Manager, "--workload", "shop/web", "--port", app,
		"--app", "127.0.0.1:" + app, "--listen", ":" + strconv.Itoa(int(w.agent)), "--token-file", TokenDir + "/token"}
	if !slices.Equal(a.Args, wantArgs) {
		t.Errorf("%s args %q, want %q", a.Name, a.Args, wantArgs)
	}
	if a.Image != testAgent.Image || a.ImagePullPolicy != corev1.PullNever {
		t.Errorf("%s image %s %s", a.Name, a.Image, a.ImagePullPolicy)
	}
	if len(a.Ports) != 1 || a.Ports[0].Name != w.appName || a.Ports[0].ContainerPort != w.agent {
		t.Errorf("%s ports %+v, want %s on %d", a.Name, a.Ports, w.appName, w.agent)
	}
	sc := a.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("%s security context %+v", a.Name, sc)
	}
	if len(a.VolumeMounts) != 1 || a.VolumeMounts[0].MountPath != TokenDir || !a.VolumeMounts[0].ReadOnly {
		t.Errorf("%s mounts %+v", a.Name, a.VolumeMounts)
	}
	if a.Resources.Limits.Memory().IsZero() || a.Resources.Requests.Cpu().IsZero() {
		t.Errorf("%s resources %+v", a.Name, a.Resources)
	}
}

// In a pod with a runAsUser of its own the agent runs as that user, who
// owns the token file.
func TestMutatePodUser(t *testing.T) {
	for _, tc := range []struct {
		name string
		user *int64
		want *int64
	}{
		{"no pod user", nil, ptr.To[int64](65532)},
		{"pod user", ptr.To[int64](1000), nil},
		{"pod user root: the agent stays non-root", ptr.To[int64](0), ptr.To[int64](65532)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := appPod("8080", corev1.ContainerPort{Name: "http", ContainerPort: 8080})
			pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: tc.user}
			ops, err := testAgent.Mutate(pod, "shop")
			if err != nil {
				t.Fatal(err)
			}
			a := container(mutated(t, pod, ops), ContainerName)
			if got := a.SecurityContext.RunAsUser; (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("agent's runAsUser %v, want %v", got, tc.want)
			}
			if !*a.SecurityContext.RunAsNonRoot {
				t.Fatal("agent may run as root")
			}
		})
	}
}

// With a CA the agent verifies the manager's TLS certificate: the CA
// reaches it through the pod's annotation and the downward API, beside
// the token.
func TestMutateWithCA(t *testing.T) {
	a := testAgent
	a.CA = []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	pod := appPod("8080", corev1.ContainerPort{Name: "http", ContainerPort: 8080})
	ops, err := a.Mutate(pod, "shop")
	if err != nil {
		t.Fatal(err)
	}
	got := mutated(t, pod, ops)
	if got.Annotations[AnnotationManagerCA] != string(a.CA) || got.Annotations[AnnotationPorts] != "8080" {
		t.Fatalf("annotations %v", got.Annotations)
	}
	agent := container(got, ContainerName)
	if n := len(agent.Args); n < 2 || agent.Args[n-2] != "--ca-file" || agent.Args[n-1] != TokenDir+"/ca.crt" {
		t.Fatalf("args %q", agent.Args)
	}
	src := got.Spec.Volumes[0].Projected.Sources
	if len(src) != 2 || src[1].DownwardAPI == nil || src[1].DownwardAPI.Items[0].Path != "ca.crt" ||
		src[1].DownwardAPI.Items[0].FieldRef.FieldPath != "metadata.annotations['"+AnnotationManagerCA+"']" {
		t.Fatalf("projected sources %+v", src)
	}
	if again, err := a.Mutate(got, "shop"); err != nil || len(again) != 0 {
		t.Fatalf("second mutation: %+v %v", again, err)
	}
}

// A pod with volumes of its own gets the token volume appended.
func TestMutateAppendsVolume(t *testing.T) {
	pod := appPod("8080", corev1.ContainerPort{Name: "http", ContainerPort: 8080})
	pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	ops, err := testAgent.Mutate(pod, "shop")
	if err != nil {
		t.Fatal(err)
	}
	got := mutated(t, pod, ops)
	if len(got.Spec.Volumes) != 2 || got.Spec.Volumes[0].Name != "data" || got.Spec.Volumes[1].Name != tokenVolume {
		t.Fatalf("volumes %+v", got.Spec.Volumes)
	}
}

// Check refuses, before anything changes, a port a Service targets by
// number, saying how to fix it; by name or on another port is fine.
func TestByName(t *testing.T) {
	spec := appPod("8080", corev1.ContainerPort{Name: "http", ContainerPort: 8080}, corev1.ContainerPort{Name: "admin", ContainerPort: 9090}).Spec
	plans, err := plan(&spec, []uint16{8080})
	if err != nil {
		t.Fatal(err)
	}
	svc := func(name string, selector map[string]string, port int32, target intstr.IntOrString) corev1.Service {
		return corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Selector: selector,
			Ports: []corev1.ServicePort{{Port: port, TargetPort: target}}}}
	}
	web := map[string]string{"app": "web"}
	for _, tc := range []struct {
		name string
		svcs []corev1.Service
		err  string
	}{
		{"by name", []corev1.Service{svc("web", web, 80, intstr.FromString("http"))}, ""},
		{"numeric targetPort refused", []corev1.Service{svc("web", web, 80, intstr.FromInt32(8080))},
			"service web targets its port 8080 by number (targetPort: 8080), and an agent can only take over a port by name: set targetPort: http in service web"},
		{"no targetPort is the port's number", []corev1.Service{svc("web", web, 8080, intstr.IntOrString{})}, "service web targets its port 8080 by number"},
		{"another port by number", []corev1.Service{svc("web", web, 90, intstr.FromInt32(9090))}, ""},
		{"a Service of other pods", []corev1.Service{svc("db", map[string]string{"app": "db"}, 80, intstr.FromInt32(8080))}, ""},
		{"a Service without selector", []corev1.Service{svc("ext", nil, 8080, intstr.FromInt32(8080))}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := byName(tc.svcs, map[string]string{"app": "web", "tier": "front"}, plans)
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

// The restore patch gives each mark its original value: null where the
// template had none.
func TestRestorePatch(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", LabelAgent: "mine"}}}
	marks := map[string]map[string]string{"labels": {LabelAgent: "enabled"}, "annotations": {AnnotationPorts: "8080", AnnotationWorkload: "web"}}
	b, err := json.Marshal(restorePatch(tmpl, marks))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"annotations":{"tether.dev/agent-ports":null,"tether.dev/workload":null},"labels":{"tether.dev/agent":"mine"}}`
	if string(b) != want {
		t.Fatalf("restore %s, want %s", b, want)
	}
}

// The app's probes that name the port an agent takes over keep checking
// the app, by number: the kubelet looks the name up among the container's
// own ports, where it is now the renamed one, and the pod would never be
// Ready.
func TestMutateProbesByName(t *testing.T) {
	pod := appPod("8080", corev1.ContainerPort{Name: "http", ContainerPort: 8080}, corev1.ContainerPort{Name: "metrics", ContainerPort: 9090})
	app := &pod.Spec.Containers[1]
	app.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}}}
	app.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}}
	app.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("metrics")}}}
	ops, err := testAgent.Mutate(pod, "shop")
	if err != nil {
		t.Fatal(err)
	}
	got := container(mutated(t, pod, ops), "app")
	for _, tc := range []struct {
		name string
		port intstr.IntOrString
		want intstr.IntOrString
	}{
		{"readiness by the taken name", got.ReadinessProbe.HTTPGet.Port, intstr.FromInt32(8080)},
		{"liveness by the taken name", got.LivenessProbe.TCPSocket.Port, intstr.FromInt32(8080)},
		{"startup by another name", got.StartupProbe.HTTPGet.Port, intstr.FromString("metrics")},
	} {
		if tc.port != tc.want {
			t.Errorf("%s: port %v, want %v", tc.name, tc.port.String(), tc.want.String())
		}
	}
}

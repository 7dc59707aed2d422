package inject

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The marks the manager puts on an intercepted workload's pod template;
// the webhook reads them from each new pod.
const (
	// LabelAgent on a pod template (value "enabled") sends its pods to the
	// webhook: the MutatingWebhookConfiguration's objectSelector.
	LabelAgent = "tether.dev/agent"
	// AnnotationPorts on a pod template lists the workload's ports the
	// agent serves, comma-separated container port numbers.
	AnnotationPorts = "tether.dev/agent-ports"
	// AnnotationWorkload on a pod template names the workload (its
	// namespace is the pod's): the agent's --workload.
	AnnotationWorkload = "tether.dev/workload"
	// AnnotationManagerCA on a pod holds the CA that verifies the
	// manager's TLS certificate, which the agent reads as a file (the
	// downward API): a volume cannot come from the manager's namespace.
	AnnotationManagerCA = "tether.dev/manager-ca"
	// LabelInjected on a workload marks it for RemoveAll.
	LabelInjected = "tether.dev/injected"
	// AnnotationRestore on a workload holds the JSON merge patch of its pod
	// template's metadata that undoes every mark: the original values.
	AnnotationRestore = "tether.dev/restore"
	// AnnotationRestartedAt on a Deployment's pod template is the agent
	// repair's rollout restart (repair.go), as `kubectl rollout restart`
	// sets kubectl.kubernetes.io/restartedAt: a key of Tether's own, which
	// the restore removes.
	AnnotationRestartedAt = "tether.dev/restartedAt"
)

// The agent container, as kube-contract.md fixes it.
const (
	// ContainerName is the agent container of the first port; further
	// ports get ContainerName-PORT.
	ContainerName = "tether-agent"
	// TokenAudience is the audience of the agent's projected token.
	TokenAudience = "tether.dev/agent"
	// TokenDir holds the agent's token file "token".
	TokenDir = "/var/run/secrets/tether.dev/agent"
	// FirstAgentPort is the first port number an agent listens on.
	FirstAgentPort = 9900

	tokenVolume     = "tether-agent-token"
	tokenExpiration = 3600
	// renamePrefix marks an app's port whose name an agent took; a port
	// name has at most 15 characters (IANA_SVC_NAME).
	renamePrefix = "tx-"
	maxPortName  = 15
)

// Agent is what the webhook puts into a pod: the manager's image and the
// address agents dial.
type Agent struct {
	Image      string
	PullPolicy corev1.PullPolicy
	// Manager is the traffic manager's gRPC address, host:port.
	Manager string
	// CA (PEM) verifies the manager's TLS certificate; nil: plaintext.
	CA []byte
}

// PatchOp is one JSON patch (RFC 6902) operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// takeover is one port an agent takes over: the app container's port at
// Ports[port] of Containers[container], renamed, and the agent's number.
type takeover struct {
	container, port int
	app             corev1.ContainerPort
	renamed         string
	agentPort       int32
}

// plan finds, in spec, the app port of each of ports and what the agent
// does with it, or says why spec cannot take an agent. Check and Mutate
// share it, so the manager refuses before any change what the webhook
// could not do.
func plan(spec *corev1.PodSpec, ports []uint16) ([]takeover, error) {
	if spec.HostNetwork {
		return nil, fmt.Errorf("its pods use hostNetwork: an agent beside them would share the node's ports; intercept a workload without hostNetwork")
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("no port to serve")
	}
	used := map[int32]bool{}
	names := map[string]bool{}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			used[p.ContainerPort] = true
			names[p.Name] = true
		}
	}
	next := int32(FirstAgentPort)
	var out []takeover
	for _, port := range ports {
		t, ok := findPort(spec, port)
		if !ok {
			return nil, fmt.Errorf("no container of its pod template declares TCP port %d: add it to the app container's ports, with a name (e.g. name: http), so that its Service can target it by name", port)
		}
		if t.app.Name == "" {
			return nil, fmt.Errorf("container %s's port %d has no name: an agent takes a port over by its name; name it (ports: - name: http, containerPort: %d) and let the Service target it by name (targetPort: http)", spec.Containers[t.container].Name, port, port)
		}
		t.renamed = renamed(t.app.Name)
		if names[t.renamed] {
			return nil, fmt.Errorf("container %s's port %s would be renamed %s, a name another port has: rename one of them", spec.Containers[t.container].Name, t.app.Name, t.renamed)
		}
		for used[next] {
			next++
		}
		t.agentPort, used[next] = next, true
		out = append(out, t)
	}
	return out, nil
}

func findPort(spec *corev1.PodSpec, port uint16) (takeover, bool) {
	for i, c := range spec.Containers {
		for j, p := range c.Ports {
			if p.ContainerPort == int32(port) && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
				return takeover{container: i, port: j, app: p}, true
			}
		}
	}
	return takeover{}, false
}

// renamed is the name an app's port gets when an agent takes its name.
func renamed(name string) string {
	n := renamePrefix + name
	if len(n) > maxPortName {
		n = strings.TrimRight(n[:maxPortName], "-")
	}
	return n
}

// parsePorts reads AnnotationPorts.
func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("annotation %s: %q is not a list of ports", AnnotationPorts, s)
		}
		ports = append(ports, uint16(p))
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}

func formatPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// Mutate is the webhook's answer to a new pod in namespace: the JSON patch
// that adds an agent for each port its template's annotation lists, or
// none for a pod without the annotation or with an agent already.
func (a Agent) Mutate(pod *corev1.Pod, namespace string) ([]PatchOp, error) {
	list, ok := pod.Annotations[AnnotationPorts]
	if !ok {
		return nil, nil
	}
	if hasAgent(&pod.Spec) {
		return nil, nil
	}
	workload := pod.Annotations[AnnotationWorkload]
	if workload == "" {
		return nil, fmt.Errorf("pod has annotation %s but not %s", AnnotationPorts, AnnotationWorkload)
	}
	ports, err := parsePorts(list)
	if err != nil {
		return nil, err
	}
	plans, err := plan(&pod.Spec, ports)
	if err != nil {
		return nil, err
	}
	var ops []PatchOp
	for _, t := range plans {
		ops = append(ops, PatchOp{Op: "replace", Path: fmt.Sprintf("/spec/containers/%d/ports/%d/name", t.container, t.port), Value: t.renamed})
		ops = append(ops, probeOps(&pod.Spec.Containers[t.container], t)...)
	}
	for i, t := range plans {
		name := ContainerName
		if i > 0 {
			name = fmt.Sprintf("%s-%d", ContainerName, t.app.ContainerPort)
		}
		c := a.container(name, namespace+"/"+workload, t)
		// The kubelet gives the token file (0600) to a pod-level
		// runAsUser: the agent must run as that user to read it.
		if sc := pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser != 0 {
			c.SecurityContext.RunAsUser, c.SecurityContext.RunAsGroup = nil, nil
		}
		ops = append(ops, PatchOp{Op: "add", Path: "/spec/containers/-", Value: c})
	}
	vol := a.volume()
	if a.CA != nil {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations/" + strings.ReplaceAll(AnnotationManagerCA, "/", "~1"), Value: string(a.CA)})
	}
	if pod.Spec.Volumes == nil {
		ops = append(ops, PatchOp{Op: "add", Path: "/spec/volumes", Value: []corev1.Volume{vol}})
	} else {
		ops = append(ops, PatchOp{Op: "add", Path: "/spec/volumes/-", Value: vol})
	}
	return ops, nil
}

// hasAgent says whether spec has an agent container already.
func hasAgent(spec *corev1.PodSpec) bool {
	return slices.ContainsFunc(spec.Containers, func(c corev1.Container) bool {
		return c.Name == ContainerName || strings.HasPrefix(c.Name, ContainerName+"-")
	})
}

// container is the agent serving t: it listens on its own number under the
// app port's original name, so a Service targeting that name reaches it,
// and forwards to the app's real port on loopback.
func (a Agent) container(name, workload string, t takeover) corev1.Container {
	port := strconv.Itoa(int(t.app.ContainerPort))
	return corev1.Container{
		Name:            name,
		Image:           a.Image,
		ImagePullPolicy: a.PullPolicy,
		Args:            a.args(workload, port, t.agentPort),
		Ports:           []corev1.ContainerPort{{Name: t.app.Name, ContainerPort: t.agentPort, Protocol: corev1.ProtocolTCP}},
		// Ready once it listens: the Service sends nothing to it before.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(t.agentPort)}},
			PeriodSeconds: 5,
		},
		VolumeMounts: []corev1.VolumeMount{{Name: tokenVolume, MountPath: TokenDir, ReadOnly: true}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: ptr.To(true),
			// The image has no /etc/passwd: a numeric user lets the
			// kubelet check runAsNonRoot. The token file, 0644 unless
			// the pod has one user, is readable to it.
			RunAsUser:                ptr.To[int64](65532),
			RunAsGroup:               ptr.To[int64](65532),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

func (a Agent) args(workload, port string, agentPort int32) []string {
	args := []string{"agent", "--manager", a.Manager, "--workload", workload, "--port", port,
		"--app", "127.0.0.1:" + port, "--listen", ":" + strconv.Itoa(int(agentPort)),
		"--token-file", TokenDir + "/token"}
	if a.CA != nil {
		args = append(args, "--ca-file", TokenDir+"/ca.crt")
	}
	return args
}

// volume is the agent's projected service-account token, for the
// manager's TokenReview only (its own audience), rotated by the kubelet;
// with TLS also the CA of the manager's certificate, from the pod's
// annotation.
func (a Agent) volume() corev1.Volume {
	sources := []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
		Audience: TokenAudience, ExpirationSeconds: ptr.To[int64](tokenExpiration), Path: "token",
	}}}
	if a.CA != nil {
		sources = append(sources, corev1.VolumeProjection{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
			Path: "ca.crt", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + AnnotationManagerCA + "']"},
		}}}})
	}
	return corev1.Volume{Name: tokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: sources}}}
}

// probeOps point the app container's probes that name the port an agent
// takes over at its number: the kubelet resolves a probe's port name among
// the container's own ports, where the name is now the renamed one, and a
// probe must keep checking the app, not the agent.
func probeOps(c *corev1.Container, t takeover) []PatchOp {
	var ops []PatchOp
	for _, p := range []struct {
		field string
		probe *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
		if p.probe == nil {
			continue
		}
		var handler string
		var port intstr.IntOrString
		switch {
		case p.probe.HTTPGet != nil:
			handler, port = "httpGet", p.probe.HTTPGet.Port
		case p.probe.TCPSocket != nil:
			handler, port = "tcpSocket", p.probe.TCPSocket.Port
		default:
			continue // exec and grpc (a number) name no port
		}
		if port.Type == intstr.String && port.StrVal == t.app.Name {
			ops = append(ops, PatchOp{Op: "replace", Path: fmt.Sprintf("/spec/containers/%d/%s/%s/port", t.container, p.field, handler), Value: t.app.ContainerPort})
		}
	}
	return ops
}

package helm

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/release"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/tether-dev/tether/charts"
	"github.com/tether-dev/tether/internal/buildinfo"
	"github.com/tether-dev/tether/kube/inject"
	"github.com/tether-dev/tether/manager"
	"github.com/tether-dev/tether/tunnel"
)

// labSubnets are extra networks (the manager discovers the cluster's), so
// that the rendered arguments show how subnets reach the manager.
const labSubnets = "subnets={198.18.64.0/18,198.18.128.0/20}"

func set(t *testing.T, sets ...string) map[string]any {
	t.Helper()
	vals, err := Values(values.Options{Values: sets})
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// objects are a rendered manifest's objects by "Kind namespace/name".
type objects map[string]runtime.Object

func render(t *testing.T, sets ...string) (objects, string) {
	t.Helper()
	rel, err := Render("tether", set(t, sets...))
	if err != nil {
		t.Fatal(err)
	}
	objs := objects{}
	for _, doc := range strings.Split(rel.Manifest, "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
			continue
		}
		obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decode %q: %v", doc, err)
		}
		m := obj.(interface {
			GetName() string
			GetNamespace() string
		})
		objs[fmt.Sprintf("%s %s/%s", gvk.Kind, m.GetNamespace(), m.GetName())] = obj
	}
	return objs, rel.Info.Notes
}

func get[T runtime.Object](t *testing.T, objs objects, key string) T {
	t.Helper()
	obj, ok := objs[key].(T)
	if !ok {
		keys := make([]string, 0, len(objs))
		for k := range objs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		t.Fatalf("no %s among %v", key, keys)
	}
	return obj
}

// helm lint through the SDK, on the directory `helm install` takes: no
// warnings or errors, with the defaults and with extra subnets.
func TestLint(t *testing.T) {
	for _, vals := range []map[string]any{nil, set(t, labSubnets)} {
		if msgs := lint.All("../../charts/tether", vals, "tether", false).Messages; worst(msgs) >= support.WarningSev {
			t.Errorf("lint with %v: %v", vals, msgs)
		}
	}
}

// Without subnets the chart renders a manager that only discovers them:
// no --subnet, and the RBAC discovery needs.
func TestSubnetsOptional(t *testing.T) {
	objs, _ := render(t)
	d := get[*appsv1.Deployment](t, objs, "Deployment tether/traffic-manager")
	if args := d.Spec.Template.Spec.Containers[0].Args; slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--subnet") }) {
		t.Fatalf("args %q: a --subnet without subnets", args)
	}
	role := get[*rbacv1.ClusterRole](t, objs, "ClusterRole /traffic-manager-tether")
	for _, want := range []struct{ group, resource string }{{"", "nodes"}, {"", "pods"}, {"networking.k8s.io", "servicecidrs"}, {"", "services"}} {
		if !slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, want.group) && slices.Contains(r.Resources, want.resource) &&
				slices.Contains(r.Verbs, "list") && slices.Contains(r.Verbs, "watch")
		}) {
			t.Errorf("the manager's ClusterRole lacks list and watch on %s (group %q)", want.resource, want.group)
		}
	}
}

func worst(msgs []support.Message) int {
	w := support.UnknownSev
	for _, m := range msgs {
		w = max(w, m.Severity)
	}
	return w
}

// The chart is a plain Helm chart (what `helm install tether charts/tether`
// needs), and the embedded one is that directory.
func TestChartLayout(t *testing.T) {
	for _, f := range []string{"tether/Chart.yaml", "tether/values.yaml", "tether/values.schema.json", "tether/templates/NOTES.txt"} {
		if _, err := fs.Stat(charts.Tether, f); err != nil {
			t.Error(err)
		}
	}
	ch, err := Chart()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Validate(); err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.APIVersion != "v2" || ch.AppVersion() != buildinfo.Release {
		t.Fatalf("Chart.yaml: apiVersion %s, appVersion %s; want v2 and tether's version %s", ch.Metadata.APIVersion, ch.AppVersion(), buildinfo.Release)
	}
	if ch.Schema == nil {
		t.Fatal("no values.schema.json")
	}
}

func TestRenderDefaults(t *testing.T) {
	objs, notes := render(t, labSubnets)
	want := []string{
		"ConfigMap tether/traffic-manager", "Deployment tether/traffic-manager", "Service tether/traffic-manager", "ServiceAccount tether/traffic-manager",
		"Role tether/traffic-manager", "RoleBinding tether/traffic-manager",
		"Role kube-system/traffic-manager-tether", "RoleBinding kube-system/traffic-manager-tether",
		"ClusterRole /traffic-manager-tether", "ClusterRoleBinding /traffic-manager-tether",
		"ClusterRole /tether-developer", "Role tether/tether-developer",
		"Secret tether/traffic-manager-tls", "ConfigMap tether/traffic-manager-ca",
		"MutatingWebhookConfiguration /tether-agent-injector-tether",
	}
	var got []string
	for k := range objs {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("objects:\n got %v\nwant %v", got, want)
	}

	// The configmap holds the manager's live keys under the names users
	// know, with the manager's defaults.
	cm := get[*corev1.ConfigMap](t, objs, "ConfigMap tether/traffic-manager")
	var keys []string
	for k := range cm.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, manager.LiveKeys()) {
		t.Fatalf("configmap keys %v, manager's live keys %v", keys, manager.LiveKeys())
	}
	r, l, err := manager.ParseLive(cm.Data)
	if err != nil || r != manager.DefaultRules || l != manager.DefaultLimits {
		t.Fatalf("the chart's defaults are not the manager's: %+v %+v %v", r, l, err)
	}

	d := get[*appsv1.Deployment](t, objs, "Deployment tether/traffic-manager")
	pod := d.Spec.Template.Spec
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Fatalf("pod security context: %+v", sc)
	}
	if pod.ServiceAccountName != "traffic-manager" || len(pod.Containers) != 1 {
		t.Fatalf("pod: %+v", pod)
	}
	c := pod.Containers[0]
	if sc := c.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Fatalf("container security context: %+v", sc)
	}
	if c.Image != "ghcr.io/tether-dev/tether:"+buildinfo.Release || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Fatalf("image %s %s", c.Image, c.ImagePullPolicy)
	}
	wantArgs := []string{"manager", "--listen=:8081", "--subnet=198.18.64.0/18", "--subnet=198.18.128.0/20", "--watch-configmap",
		"--keepalive-time=" + tunnel.DefaultKeepalive.Time.String(), "--keepalive-timeout=" + tunnel.DefaultKeepalive.Timeout.String(),
		"--auth-mode=kubernetes", "--metrics-addr=:9090",
		"--webhook-port=8443", "--agent-image=ghcr.io/tether-dev/tether:" + buildinfo.Release, "--agent-image-pull-policy=IfNotPresent",
		"--agent-manager=traffic-manager.tether.svc:8081",
		"--tls-cert-file=/etc/tether/tls/tls.crt", "--tls-key-file=/etc/tether/tls/tls.key", "--agent-ca-file=/etc/tether/tls/ca.crt"}
	if !slices.Equal(c.Args, wantArgs) {
		t.Fatalf("args %q, want %q", c.Args, wantArgs)
	}
	// Each live key reaches the manager from the configmap through the
	// variable its configuration reads (TETHER_ + the key, dots as _).
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for _, k := range manager.LiveKeys() {
		e := env["TETHER_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))]
		if ref := e.ValueFrom; ref == nil || ref.ConfigMapKeyRef == nil || ref.ConfigMapKeyRef.Name != "traffic-manager" || ref.ConfigMapKeyRef.Key != k {
			t.Errorf("%s does not come from the configmap: %+v", k, e)
		}
	}
	if e := env["TETHER_MANAGER_NAMESPACE"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("manager.namespace is not the pod's namespace: %+v", e)
	}
	// The API server decides who calls: the manager listens on the pod's
	// address (agents come through the Service), and is probed there.
	if c.ReadinessProbe == nil || c.ReadinessProbe.TCPSocket == nil {
		t.Errorf("no readiness probe in auth.mode kubernetes: %+v", c.ReadinessProbe)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/tether/tls" || pod.Volumes[0].Secret.SecretName != "traffic-manager-tls" {
		t.Errorf("the TLS secret is not mounted: %+v %+v", c.VolumeMounts, pod.Volumes)
	}

	svc := get[*corev1.Service](t, objs, "Service tether/traffic-manager")
	if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[0].Port != 8081 || svc.Spec.Ports[0].TargetPort.String() != "grpc" || svc.Spec.Selector["app.kubernetes.io/component"] != "traffic-manager" {
		t.Fatalf("service: %+v", svc.Spec)
	}
	if !strings.Contains(notes, "\n  tether connect\n") {
		t.Fatalf("notes do not say how to connect:\n%s", notes)
	}
}

// The chart issues the manager's certificate for the Service's names and
// publishes the CA that verifies it, as tether connect checks it.
func TestTLS(t *testing.T) {
	objs, _ := render(t, labSubnets)
	sec := get[*corev1.Secret](t, objs, "Secret tether/traffic-manager-tls")
	ca := get[*corev1.ConfigMap](t, objs, "ConfigMap tether/traffic-manager-ca")
	if strings.TrimSpace(string(sec.Data["ca.crt"])) != strings.TrimSpace(ca.Data["ca.crt"]) {
		t.Fatalf("the configmap's CA is not the secret's:\n%s\n%s", ca.Data["ca.crt"], sec.Data["ca.crt"])
	}
	pair, err := tls.X509KeyPair(sec.Data["tls.crt"], sec.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(ca.Data["ca.crt"])) {
		t.Fatal("no CA in configmap traffic-manager-ca")
	}
	for _, name := range []string{"traffic-manager", "traffic-manager.tether", "traffic-manager.tether.svc", "localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "traffic-manager.other.svc"}); err == nil {
		t.Error("the certificate is good for another namespace's Service")
	}

	if sec.Annotations["tether.dev/tls-sans"] == "" || len(sec.Data["ca.key"]) == 0 {
		t.Errorf("the secret lacks what an upgrade needs to issue the certificate again: annotations %v, ca.key %d bytes", sec.Annotations, len(sec.Data["ca.key"]))
	}
	dep := get[*appsv1.Deployment](t, objs, "Deployment tether/traffic-manager")
	plain := dep.Spec.Template.Annotations["tether.dev/tls-sans"]

	// tls.extraSANs: an address and a name where a NodePort or a load
	// balancer reaches the manager; the pod template changes with them.
	objs, _ = render(t, labSubnets, "tls.extraSANs={198.19.0.5,manager.example.com,fd00::5}")
	sec = get[*corev1.Secret](t, objs, "Secret tether/traffic-manager-tls")
	ca = get[*corev1.ConfigMap](t, objs, "ConfigMap tether/traffic-manager-ca")
	roots = x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(ca.Data["ca.crt"]))
	pair, err = tls.X509KeyPair(sec.Data["tls.crt"], sec.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"198.19.0.5", "manager.example.com", "fd00::5", "traffic-manager.tether.svc", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("with tls.extraSANs, %s: %v", name, err)
		}
	}
	if got := fmt.Sprint(leaf.IPAddresses); got != "[127.0.0.1 198.19.0.5 fd00::5]" {
		t.Errorf("IP SANs %s", got)
	}
	dep = get[*appsv1.Deployment](t, objs, "Deployment tether/traffic-manager")
	if extra := dep.Spec.Template.Annotations["tether.dev/tls-sans"]; extra == "" || extra == plain {
		t.Errorf("the pod template's tether.dev/tls-sans %q, %q without extraSANs: an upgrade would not restart the manager", extra, plain)
	}
	for _, bad := range []string{"tls.extraSANs={bad_name}", "tls.extraSANs={300.1.1.1}"} {
		if _, err := Render("tether", set(t, labSubnets, bad)); err == nil {
			t.Errorf("%s rendered", bad)
		}
	}

	// Without TLS: no certificate, and the manager serves plaintext.
	objs, _ = render(t, labSubnets, "tls.enabled=false")
	for _, key := range []string{"Secret tether/traffic-manager-tls", "ConfigMap tether/traffic-manager-ca"} {
		if _, ok := objs[key]; ok {
			t.Errorf("%s with tls.enabled=false", key)
		}
	}
	c := get[*appsv1.Deployment](t, objs, "Deployment tether/traffic-manager").Spec.Template.Spec.Containers[0]
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--tls-") }) || len(c.VolumeMounts) != 0 {
		t.Errorf("TLS arguments or mounts with tls.enabled=false: %q %+v", c.Args, c.VolumeMounts)
	}
}

// A token file is for auth.mode tokenfile; with the API server deciding it
// would be ignored, so the chart refuses it.
func TestTokenSecretNeedsTokenfileMode(t *testing.T) {
	_, err := Render("tether", set(t, labSubnets, "auth.tokenSecret=tether-tokens"))
	if err == nil || !strings.Contains(err.Error(), "auth.tokenSecret is for auth.mode tokenfile") {
		t.Fatalf("token secret with auth.mode kubernetes: %v", err)
	}
}

// rule is one RBAC rule, flattened for comparison.
type rule struct{ group, resource, names, verbs string }

func rules(rs []rbacv1.PolicyRule) []rule {
	var out []rule
	for _, r := range rs {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				out = append(out, rule{g, res, strings.Join(r.ResourceNames, ","), strings.Join(r.Verbs, ",")})
			}
		}
	}
	return out
}

// Least privilege: the roles grant exactly what the features need.
func TestRBAC(t *testing.T) {
	objs, _ := render(t, labSubnets)
	for _, tc := range []struct {
		key  string
		want []rule
	}{
		{"Role tether/traffic-manager", []rule{
			{"", "configmaps", "traffic-manager", "get,list,watch"},
			{"", "events", "", "create,patch"},
		}},
		{"Role kube-system/traffic-manager-tether", []rule{
			{"", "configmaps", "extension-apiserver-authentication", "get,list,watch"},
		}},
		{"ClusterRole /traffic-manager-tether", []rule{
			{"", "nodes", "", "get,list,watch"},
			{"", "pods", "", "get,list,watch"},
			{"", "pods", "", "delete"},
			{"", "pods/eviction", "", "create"},
			{"", "events", "", "create,patch"},
			{"", "services", "", "get,list,watch"},
			{"networking.k8s.io", "servicecidrs", "", "get,list,watch"},
			{"apps", "deployments", "", "get,list,watch,patch"},
			{"apps", "statefulsets", "", "get,list,watch,patch"},
			{"apps", "replicasets", "", "get,list,watch,patch"},
			{"authentication.k8s.io", "tokenreviews", "", "create"},
			{"authorization.k8s.io", "subjectaccessreviews", "", "create"},
			{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", "tether-agent-injector-tether", "get,patch"},
		}},
		{"ClusterRole /tether-developer", []rule{
			{"apps", "deployments", "", "get,list"},
			{"apps", "statefulsets", "", "get,list"},
			{"apps", "replicasets", "", "get,list"},
			{"", "services", "", "get,list"},
			{"tether.dev", "intercepts", "", "create"},
		}},
		{"Role tether/tether-developer", []rule{
			{"", "services", "", "get,list"},
			{"", "pods", "", "get,list"},
			{"", "pods/portforward", "", "create"},
			{"", "configmaps", "traffic-manager-ca", "get"},
		}},
	} {
		t.Run(tc.key, func(t *testing.T) {
			var got []rule
			switch o := objs[tc.key].(type) {
			case *rbacv1.Role:
				got = rules(o.Rules)
			case *rbacv1.ClusterRole:
				got = rules(o.Rules)
			default:
				t.Fatalf("no %s", tc.key)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("rules\n got %v\nwant %v", got, tc.want)
			}
		})
	}
	for _, key := range []string{"RoleBinding tether/traffic-manager", "RoleBinding kube-system/traffic-manager-tether"} {
		rb := get[*rbacv1.RoleBinding](t, objs, key)
		if len(rb.Subjects) != 1 || rb.Subjects[0].Kind != "ServiceAccount" || rb.Subjects[0].Name != "traffic-manager" || rb.Subjects[0].Namespace != "tether" {
			t.Errorf("%s binds %+v", key, rb.Subjects)
		}
	}
}

// Every RBAC rule in the templates says, in a comment just above it, which
// feature needs it.
func TestRBACRulesCommented(t *testing.T) {
	templates, err := fs.Glob(charts.Tether, "tether/templates/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range templates {
		b, err := fs.ReadFile(charts.Tether, name)
		if err != nil {
			t.Fatal(err)
		}
		prev := ""
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for line := 1; sc.Scan(); line++ {
			text := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(text, "- apiGroups:") {
				n++
				if !strings.HasPrefix(prev, "#") {
					t.Errorf("%s:%d: a rule without a comment saying which feature needs it", name, line)
				}
			}
			prev = text
		}
	}
	if n < 15 {
		t.Fatalf("found %d rules: the check did not see the templates", n)
	}
}

func TestRenderOverrides(t *testing.T) {
	def, _ := render(t, labSubnets)
	objs, notes := render(t, labSubnets, "intercept.inactiveBlockTimeout=5m", "limits.sessionsPerUser=2",
		"image.repository=tether.local/tether,image.tag=dev,image.pullPolicy=Never", "developers.groups={devs}", "developers.users={alice}",
		"auth.mode=tokenfile", "auth.tokenSecret=tether-tokens", "service.port=9000")
	cm := get[*corev1.ConfigMap](t, objs, "ConfigMap tether/traffic-manager")
	if cm.Data["intercept.inactiveBlockTimeout"] != "5m" || cm.Data["limits.sessionsPerUser"] != "2" {
		t.Fatalf("configmap: %v", cm.Data)
	}
	r, l, err := manager.ParseLive(cm.Data)
	if err != nil || r.InactiveBlockTimeout.String() != "5m0s" || l.SessionsPerUser != 2 {
		t.Fatalf("the manager reads %+v %+v %v", r, l, err)
	}
	d := get[*appsv1.Deployment](t, objs, "Deployment tether/traffic-manager")
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "tether.local/tether:dev" || c.ImagePullPolicy != corev1.PullNever {
		t.Fatalf("image %s %s", c.Image, c.ImagePullPolicy)
	}
	if !slices.Contains(c.Args, "--token-file=/etc/tether/auth/tokens.csv") || !slices.Contains(c.Args, "--auth-mode=tokenfile") || len(c.VolumeMounts) != 2 || d.Spec.Template.Spec.Volumes[0].Secret.SecretName != "tether-tokens" {
		t.Fatalf("token file: %q %+v", c.Args, d.Spec.Template.Spec.Volumes)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.TCPSocket == nil {
		t.Fatalf("with tokens the manager listens on the pod's address and has a probe: %+v", c.ReadinessProbe)
	}
	// The manager watches the configmap: a changed rule does not roll it.
	if before := get[*appsv1.Deployment](t, def, "Deployment tether/traffic-manager").Spec.Template; !reflect.DeepEqual(before.Annotations, d.Spec.Template.Annotations) {
		t.Fatalf("pod template annotations %v → %v", before.Annotations, d.Spec.Template.Annotations)
	}
	for _, key := range []string{"ClusterRoleBinding /tether-developer", "RoleBinding tether/tether-developer"} {
		var subjects []rbacv1.Subject
		switch o := objs[key].(type) {
		case *rbacv1.ClusterRoleBinding:
			subjects = o.Subjects
		case *rbacv1.RoleBinding:
			subjects = o.Subjects
		default:
			t.Fatalf("no %s", key)
		}
		want := []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "alice"}, {APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: "devs"}}
		if !slices.Equal(subjects, want) {
			t.Errorf("%s subjects %+v", key, subjects)
		}
	}
	if !strings.Contains(notes, "--manager traffic-manager.tether:9000") {
		t.Errorf("notes with service.port=9000:\n%s", notes)
	}
}

// The schema refuses what the manager would refuse, with the key's path in
// the error.
func TestSchemaRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  string
		want []string
	}{
		{"not a duration", "intercept.inactiveBlockTimeout=5x", []string{"at '/intercept/inactiveBlockTimeout': '5x' is not a positive duration such as 30s, 10m or 1h30m"}},
		{"a bare number", "grpc.connectionTTL=300", []string{"/grpc/connectionTTL"}},
		{"zero", "activity.reportInterval=0s", []string{"/activity/reportInterval"}},
		{"unknown top-level key", "inactiveBlockTimeout=5m", []string{"additional properties 'inactiveBlockTimeout' not allowed"}},
		{"unknown nested key", "intercept.inactiveBlockTimout=5m", []string{"/intercept", "'inactiveBlockTimout' not allowed"}},
		{"the namespace is the release's", "manager.namespace=other", []string{"/manager", "'namespace' not allowed"}},
		{"limit zero", "limits.sessionsPerUser=0", []string{"/limits/sessionsPerUser", "minimum"}},
		{"limit not a number", "limits.tcpFlowsPerSession=lots", []string{"/limits/tcpFlowsPerSession"}},
		{"pull policy", "image.pullPolicy=Sometimes", []string{"/image/pullPolicy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render("tether", set(t, labSubnets, tc.set))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

// The schema's duration pattern accepts what the manager's parser accepts.
func TestSchemaDurationsAgreeWithTheManager(t *testing.T) {
	for _, d := range []string{"30s", "5m", "1h30m", "1.5h", "0.5s", "500ms", "90s", "2h0m0s", "10us", "1µs",
		"0s", "0", "00m", "0.0s", "5", "-5m", "5 m", "5x", "m", "1h-5m", ".s", ""} {
		_, err := Render("tether", set(t, labSubnets, "activity.reportInterval="+d))
		_, _, perr := manager.ParseLive(map[string]string{"activity.reportInterval": d})
		if (err == nil) != (perr == nil) {
			t.Errorf("%q: the chart says %v, the manager %v", d, err, perr)
		}
	}
}

// values.yaml is what `tether config view manager` shows as defaults.
func TestValuesAreTheManagersDefaults(t *testing.T) {
	ch, err := Chart()
	if err != nil {
		t.Fatal(err)
	}
	v := chartutil.Values(ch.Values)
	for key, want := range map[string]string{
		"grpc.keepaliveTime":    tunnel.DefaultKeepalive.Time.String(),
		"grpc.keepaliveTimeout": tunnel.DefaultKeepalive.Timeout.String(),
	} {
		got, err := v.PathValue(key)
		if err != nil || got != want {
			t.Errorf("values.yaml %s = %v (%v), the manager's default %s", key, got, err, want)
		}
	}
}

// The agent injector: only pods the manager marked, never its own
// namespace's, on pod creation, Ignore when the manager is down, served on
// the Service's webhook port by the manager's container.
func TestAgentInjectorWebhook(t *testing.T) {
	objs, _ := render(t, labSubnets, "webhook.port=9443")
	mwc := get[*admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration /"+inject.WebhookName("tether"))
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("webhooks %+v", mwc.Webhooks)
	}
	wh := mwc.Webhooks[0]
	if *wh.FailurePolicy != admissionregistrationv1.Ignore || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("failurePolicy %s, sideEffects %s", *wh.FailurePolicy, *wh.SideEffects)
	}
	if s := wh.ClientConfig.Service; s == nil || s.Name != inject.ServiceName || s.Namespace != "tether" || *s.Path != inject.Path || *s.Port != 9443 || len(wh.ClientConfig.CABundle) != 0 {
		t.Errorf("clientConfig %+v: want the manager's Service on the webhook port, caBundle patched in by the manager", wh.ClientConfig)
	}
	if len(wh.Rules) != 1 || !slices.Equal(wh.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) ||
		!slices.Equal(wh.Rules[0].Resources, []string{"pods"}) {
		t.Errorf("rules %+v", wh.Rules)
	}
	if !reflect.DeepEqual(wh.ObjectSelector.MatchLabels, map[string]string{inject.LabelAgent: "enabled"}) {
		t.Errorf("objectSelector %+v", wh.ObjectSelector)
	}
	if e := wh.NamespaceSelector.MatchExpressions; len(e) != 1 || e[0].Key != "kubernetes.io/metadata.name" || e[0].Operator != "NotIn" || !slices.Equal(e[0].Values, []string{"tether"}) {
		t.Errorf("namespaceSelector %+v", wh.NamespaceSelector)
	}
	svc := get[*corev1.Service](t, objs, "Service tether/traffic-manager")
	if p := svc.Spec.Ports[1]; p.Name != "webhook" || p.Port != 9443 || p.TargetPort.String() != "webhook" {
		t.Errorf("service's webhook port %+v", p)
	}
	c := get[*appsv1.Deployment](t, objs, "Deployment tether/traffic-manager").Spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Args, "--webhook-port=9443") || len(c.Ports) != 3 || c.Ports[1].Name != "webhook" || c.Ports[1].ContainerPort != 9443 {
		t.Errorf("manager's args %q, ports %+v", c.Args, c.Ports)
	}
}

// Plain `helm uninstall` runs a pre-delete Job that takes the agents out
// with the manager's service account, in the manager's image.
func TestRemoveAgentsHook(t *testing.T) {
	rel, err := Render("tether", set(t, labSubnets, "image.repository=tether.local/tether,image.tag=dev,image.pullPolicy=Never"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rel.Hooks) != 1 {
		t.Fatalf("hooks %+v", rel.Hooks)
	}
	h := rel.Hooks[0]
	if len(h.Events) != 1 || h.Events[0] != release.HookPreDelete {
		t.Fatalf("hook %s on %v, want pre-delete", h.Name, h.Events)
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(h.Manifest), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	job, ok := obj.(*batchv1.Job)
	if !ok {
		t.Fatalf("hook is a %T", obj)
	}
	pod := job.Spec.Template.Spec
	c := pod.Containers[0]
	if pod.ServiceAccountName != "traffic-manager" || c.Image != "tether.local/tether:dev" || c.ImagePullPolicy != corev1.PullNever ||
		!slices.Equal(c.Args, []string{"uninstall", "--agents", "--in-cluster"}) {
		t.Fatalf("job pod: service account %s, image %s %s, args %q", pod.ServiceAccountName, c.Image, c.ImagePullPolicy, c.Args)
	}
	if job.Spec.ActiveDeadlineSeconds == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Fatalf("job: deadline %v, security context %+v", job.Spec.ActiveDeadlineSeconds, c.SecurityContext)
	}
}

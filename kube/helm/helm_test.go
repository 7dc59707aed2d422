package helm

import (
	"bufio"
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
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/tether-dev/tether/charts"
	"github.com/tether-dev/tether/internal/buildinfo"
	"github.com/tether-dev/tether/manager"
	"github.com/tether-dev/tether/tunnel"
)

// labSubnets is the one value the chart requires, until the manager
// discovers the cluster's networks.
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
		"--keepalive-time=" + tunnel.DefaultKeepalive.Time.String(), "--keepalive-timeout=" + tunnel.DefaultKeepalive.Timeout.String()}
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
	// Development mode listens on loopback: a probe on the pod's address
	// would never pass.
	if c.ReadinessProbe != nil {
		t.Errorf("readiness probe in development mode: %+v", c.ReadinessProbe)
	}

	svc := get[*corev1.Service](t, objs, "Service tether/traffic-manager")
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8081 || svc.Spec.Ports[0].TargetPort.String() != "grpc" || svc.Spec.Selector["app.kubernetes.io/component"] != "traffic-manager" {
		t.Fatalf("service: %+v", svc.Spec)
	}
	if !strings.Contains(notes, "kubectl port-forward -n tether svc/traffic-manager 8081:8081") || !strings.Contains(notes, "tether connect --manager 127.0.0.1:8081") {
		t.Fatalf("notes do not say how to connect:\n%s", notes)
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
			{"", "services", "", "get,list,watch"},
			{"networking.k8s.io", "servicecidrs", "", "get,list,watch"},
			{"apps", "deployments", "", "get,list,watch,patch"},
			{"apps", "statefulsets", "", "get,list,watch,patch"},
			{"apps", "replicasets", "", "get,list,watch,patch"},
			{"authentication.k8s.io", "tokenreviews", "", "create"},
			{"authorization.k8s.io", "subjectaccessreviews", "", "create"},
			{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", "tether-agent-injector-tether", "get,update"},
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
		"auth.tokenSecret=tether-tokens", "service.port=9000")
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
	if !slices.Contains(c.Args, "--token-file=/etc/tether/auth/tokens.csv") || len(c.VolumeMounts) != 1 || d.Spec.Template.Spec.Volumes[0].Secret.SecretName != "tether-tokens" {
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
	if !strings.Contains(notes, "8081:9000") {
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

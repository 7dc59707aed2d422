package workloads_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/kube/auth"
	"github.com/tether-dev/tether/kube/helm"
	"github.com/tether-dev/tether/kube/internal/labtest"
	"github.com/tether-dev/tether/kube/workloads"
	"github.com/tether-dev/tether/manager"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// One real cluster per test process (the machine's test cluster, taken in
// turns with the other kube/ packages).
func TestMain(m *testing.M) { labtest.Main(m, "/tmp/tether-kubelab-kube-workloads") }

// testApp is the test app's pod template: one container "app" with ports.
func testApp(app string, ports ...corev1.ContainerPort) corev1.PodTemplateSpec {
	zero := int64(0)
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			Containers:                    []corev1.Container{{Name: "app", Image: kubelab.TestAppImage, ImagePullPolicy: corev1.PullNever, Ports: ports}},
		},
	}
}

func service(name, app string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": app}, Ports: ports}}
}

func svcPort(name string, port int32, target intstr.IntOrString) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: target}
}

// shop creates, in ns: Deployment web (Services web → named port http,
// web-metrics → 9100 by number), StatefulSet db (Service db → 5432 by
// number), a bare ReplicaSet batch (Service batch → 8081 by number, which
// its container does not declare), a ReplicaSet also called web and one
// called quiet, both without Services. It returns once web's ReplicaSet and pod and db's pod
// exist.
func shop(t *testing.T, admin kubernetes.Interface, ns string) {
	t.Helper()
	ctx := context.Background()
	one, none := int32(1), int32(0)
	sel := func(app string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	apps := admin.AppsV1()
	must(apps.Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: sel("web"),
			Template: testApp("web", corev1.ContainerPort{Name: "http", ContainerPort: 8080}, corev1.ContainerPort{ContainerPort: 9100})}}, metav1.CreateOptions{}))
	must(apps.StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: &one, Selector: sel("db"), ServiceName: "db",
			Template: testApp("db", corev1.ContainerPort{Name: "pg", ContainerPort: 5432})}}, metav1.CreateOptions{}))
	must(apps.ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "batch"},
		Spec: appsv1.ReplicaSetSpec{Replicas: &none, Selector: sel("batch"), Template: testApp("batch")}}, metav1.CreateOptions{}))
	for _, name := range []string{"web", "quiet"} {
		must(apps.ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.ReplicaSetSpec{Replicas: &none, Selector: sel(name + "-rs"), Template: testApp(name+"-rs", corev1.ContainerPort{ContainerPort: 8080})}}, metav1.CreateOptions{}))
	}
	for _, s := range []*corev1.Service{
		service("web", "web", svcPort("http", 80, intstr.FromString("http"))),
		service("web-metrics", "web", svcPort("metrics", 9100, intstr.FromInt32(9100))),
		service("db", "db", svcPort("pg", 5432, intstr.FromInt32(5432))),
		service("batch", "batch", svcPort("http", 80, intstr.FromInt32(8081))),
	} {
		must(admin.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{}))
	}
	labtest.Eventually(t, "the pods of web and db", 60*time.Second, 200*time.Millisecond, func() error {
		for _, app := range []string{"web", "db"} {
			pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err != nil {
				return err
			}
			if len(pods.Items) == 0 {
				return fmt.Errorf("no pod of %s yet", app)
			}
		}
		return nil
	})
}

// podOf is the one pod of app in ns.
func podOf(t *testing.T, admin kubernetes.Interface, ns, app string) corev1.Pod {
	t.Helper()
	pods, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("the pod of %s: %v (%d pods)", app, err, len(pods.Items))
	}
	return pods.Items[0]
}

func describe(w manager.Workload) string {
	s := w.Kind + " " + w.Key()
	for _, p := range w.Ports {
		via := make([]string, 0, len(p.Via))
		for _, v := range p.Via {
			via = append(via, v.String())
		}
		s += fmt.Sprintf(" %d/%s/%s%v", p.Port, p.Name, p.Container, via)
	}
	return s
}

// TestWorkloadsOnCluster: the workloads of a namespace as the API server
// has them, Resolve's refusals, the manager's refusals of an intercept
// before anything changes, and agents known by their pods' tokens.
func TestWorkloadsOnCluster(t *testing.T) {
	_, admin, adminREST := labtest.Cluster(t)
	ns := labtest.Namespace(t, admin)
	// The manager works with the chart's RBAC and nothing more.
	mc := chartRBAC(t, admin, adminREST, ns)
	shop(t, admin, ns)
	w := workloads.New(mc)
	ctx := context.Background()

	t.Run("resolve", func(t *testing.T) {
		for _, tc := range []struct{ name, want string }{
			{"web", fmt.Sprintf("Deployment %s/web 8080/http/app[web:80] 9100//app[web-metrics:9100]", ns)},
			{"db", fmt.Sprintf("StatefulSet %s/db 5432/pg/app[db:5432]", ns)},
			{"batch", fmt.Sprintf("ReplicaSet %s/batch 8081//[batch:80]", ns)},
		} {
			got, err := w.Resolve(ctx, ns, tc.name)
			if err != nil || describe(got) != tc.want {
				t.Errorf("Resolve(%s) = %q, %v; want %q", tc.name, describe(got), err, tc.want)
			}
		}
		_, err := w.Resolve(ctx, ns, "nope")
		want := fmt.Sprintf("no deployment, statefulset or replicaset nope in %s; its workloads: batch (replicaset), db (statefulset), quiet (replicaset), web (deployment)", ns)
		if !errors.Is(err, manager.ErrNoWorkload) || err.Error() != want {
			t.Errorf("Resolve(nope) = %v, want ErrNoWorkload: %s", err, want)
		}
		webRS := podOf(t, admin, ns, "web").OwnerReferences[0].Name
		_, err = w.Resolve(ctx, ns, webRS)
		want = fmt.Sprintf("replicaset %s in %s is owned by deployment web: intercept web", webRS, ns)
		if !errors.Is(err, manager.ErrNotInterceptable) || err.Error() != want {
			t.Errorf("Resolve(%s) = %v, want ErrNotInterceptable: %s", webRS, err, want)
		}
	})

	t.Run("list", func(t *testing.T) {
		got, err := w.List(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		var rows []string
		for _, x := range got {
			rows = append(rows, x.Kind+" "+x.Name)
		}
		// web's own ReplicaSet is not among them (its Deployment is), nor
		// the ReplicaSet web that the Deployment's name shadows.
		if want := "ReplicaSet batch, StatefulSet db, ReplicaSet quiet, Deployment web"; strings.Join(rows, ", ") != want {
			t.Fatalf("List = %q, want %q", strings.Join(rows, ", "), want)
		}
	})

	t.Run("intercept refusals", func(t *testing.T) {
		c := labtest.Manager(t, manager.Config{Workloads: w})
		sess := arrive(t, c, "")
		create := func(workload string, port uint32) error {
			_, err := c.CreateIntercept(sess, &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "x", Workload: workload, Port: port, Kind: pb.InterceptKind_GLOBAL}})
			return err
		}
		for _, tc := range []struct {
			name, workload string
			port           uint32
			code           codes.Code
			want           string
		}{
			{"unknown workload", ns + "/nope", 8080, codes.NotFound, "no deployment, statefulset or replicaset nope in " + ns},
			{"port no Service exposes", ns + "/web", 9090, codes.InvalidArgument,
				fmt.Sprintf("deployment web in %s has no Service port 9090; its Services expose 8080 (web:80→http), 9100 (web-metrics:9100→9100)", ns)},
			{"the Service's port", ns + "/web", 80, codes.InvalidArgument, "Service web's port 80 targets container port 8080: give --port 8080"},
			{"a workload no Service selects", ns + "/quiet", 8080, codes.FailedPrecondition,
				fmt.Sprintf("replicaset quiet in %s has no port that a Service targets", ns)},
			{"a Deployment's ReplicaSet", ns + "/" + podOf(t, admin, ns, "web").OwnerReferences[0].Name, 8080, codes.FailedPrecondition,
				"is owned by deployment web: intercept web"},
		} {
			err := create(tc.workload, tc.port)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Errorf("%s: CreateIntercept(%s, %d) = %v, want %v containing %q", tc.name, tc.workload, tc.port, err, tc.code, tc.want)
			}
			t.Logf("%s: %v", tc.name, err)
		}
		if err := create(ns+"/web", 8080); err != nil {
			t.Fatalf("CreateIntercept(web, 8080) = %v, want the intercept", err)
		}
		resp, err := c.ListWorkloads(sess, &pb.ListWorkloadsRequest{Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		var web *pb.WorkloadInfo
		for _, x := range resp.Workloads {
			if x.Name == "web" && x.Kind == workloads.KindDeployment {
				web = x
			}
		}
		if web == nil || len(web.Intercepts) != 1 || web.Intercepts[0].Spec.Name != "x" || len(web.Ports) != 2 {
			t.Fatalf("ListWorkloads: web is %v, want its two ports and intercept x", web)
		}
	})

	t.Run("agent tokens", func(t *testing.T) {
		const ttl = 200 * time.Millisecond // a RoleBinding counts within a poll or two
		authn, authz, err := auth.New(auth.Config{Client: mc, Pods: w, TokenCacheTTL: ttl, AllowCacheTTL: ttl, DenyCacheTTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		c := labtest.Manager(t, manager.Config{Authenticator: authn, Authorizer: authz, Workloads: w})
		webPod, dbPod := podOf(t, admin, ns, "web"), podOf(t, admin, ns, "db")
		webToken := podToken(t, admin, ns, webPod, []string{wire.AgentAudience})
		id, ok, err := authn.AuthenticateAgent(ctx, webToken)
		if !ok || err != nil || id.Workload != ns+"/web" || id.Pod != ns+"/"+webPod.Name || !id.Agent() {
			t.Fatalf("AuthenticateAgent(web's pod token) = %+v, %v, %v; want an agent of %s/web in pod %s", id, ok, err, ns, webPod.Name)
		}
		id, ok, err = authn.AuthenticateAgent(ctx, podToken(t, admin, ns, dbPod, []string{wire.AgentAudience}))
		if !ok || err != nil || id.Workload != ns+"/db" {
			t.Fatalf("AuthenticateAgent(db's pod token) = %+v, %v, %v; want an agent of %s/db", id, ok, err, ns)
		}

		watch := func(token, workload string) error {
			sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, wire.MDAuthorization, "Bearer "+token))
			defer cancel()
			s, err := c.WatchAgent(sctx, &pb.WatchAgentRequest{Workload: workload, Ports: []uint32{8080}})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}
		if err := watch(webToken, ns+"/web"); err != nil {
			t.Fatalf("web's agent watching web: %v", err)
		}
		for _, tc := range []struct {
			name, token, workload string
			want                  string
		}{
			{"another workload", webToken, ns + "/db",
				fmt.Sprintf("agent of pod %s/%s may serve only its own workload %s/web, not %s/db", ns, webPod.Name, ns, ns)},
			{"a developer's token", kubelabToken(t, "alice"), ns + "/web",
				"WatchAgent needs an agent's token, its pod's projected service-account token of audience tether.dev/agent"},
			{"the pod's token for the API server", podToken(t, admin, ns, webPod, nil), ns + "/web", "this token is not one"},
			{"an agent-audience token bound to no pod", podToken(t, admin, ns, corev1.Pod{}, []string{wire.AgentAudience}), ns + "/web",
				fmt.Sprintf("the token of system:serviceaccount:%s:default is not bound to a pod", ns)},
		} {
			err := watch(tc.token, tc.workload)
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Errorf("%s: WatchAgent(%s) = %v, want PermissionDenied containing %q", tc.name, tc.workload, err, tc.want)
			}
			t.Logf("%s: %v", tc.name, err)
		}

		// A developer lists workloads and intercepts them as the chart's
		// ClusterRole tether-developer allows, bound in the namespace.
		alice := arrive(t, c, kubelabToken(t, "alice"))
		list := func() error {
			_, err := c.ListWorkloads(alice, &pb.ListWorkloadsRequest{Namespace: ns})
			return err
		}
		err = list()
		want := fmt.Sprintf(`user "alice" may not list deployments.apps in namespace %q`, ns)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
			t.Fatalf("alice's list before the RoleBinding = %v, want PermissionDenied naming %s", err, want)
		}
		t.Logf("refused: %v", err)
		if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice-developer"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tether-developer"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		labtest.Eventually(t, "alice's list with tether-developer", 10*time.Second, ttl, list)
		if _, err := c.CreateIntercept(alice, &pb.CreateInterceptRequest{Spec: &pb.InterceptSpec{Name: "web", Workload: ns + "/web", Port: 8080,
			Kind: pb.InterceptKind_HTTP, Headers: map[string]string{"x-user": "alice"}}}); err != nil {
			t.Fatalf("alice's intercept with tether-developer: %v", err)
		}
	})
}

// chartRBAC applies the chart's RBAC for a manager in ns (its
// ServiceAccount, its ClusterRole and binding) and the developers'
// ClusterRole, and returns a client acting as the manager's service
// account. The cluster-scoped objects go with the test.
func chartRBAC(t *testing.T, admin kubernetes.Interface, adminREST *rest.Config, ns string) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	rel, err := helm.Render(ns, map[string]any{"subnets": []any{"198.18.64.0/18"}})
	if err != nil {
		t.Fatal(err)
	}
	rb := admin.RbacV1()
	for _, doc := range strings.Split(rel.Manifest, "\n---") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			continue // a comment-only document
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = admin.CoreV1().ServiceAccounts(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			if o.Name != "traffic-manager-"+ns && o.Name != "tether-developer" {
				continue
			}
			_, err = rb.ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
			t.Cleanup(func() { _ = rb.ClusterRoles().Delete(context.Background(), o.Name, metav1.DeleteOptions{}) })
		case *rbacv1.ClusterRoleBinding:
			if o.Name != "traffic-manager-"+ns {
				continue
			}
			_, err = rb.ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
			t.Cleanup(func() { _ = rb.ClusterRoleBindings().Delete(context.Background(), o.Name, metav1.DeleteOptions{}) })
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	tok, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "traffic-manager", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(adminREST)
	cfg.BearerToken, cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData = tok.Status.Token, nil, nil
	return kubernetes.NewForConfigOrDie(cfg)
}

// podToken is a token of service account default in ns, for audiences
// (nil: the API server's), bound to pod unless pod is empty.
func podToken(t *testing.T, admin kubernetes.Interface, ns string, pod corev1.Pod, audiences []string) string {
	t.Helper()
	exp := int64(3600)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &exp}}
	if pod.Name != "" {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), "default", req, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func kubelabToken(t *testing.T, name string) string {
	t.Helper()
	for _, u := range kubelab.Users {
		if u.Name == name {
			return u.Token
		}
	}
	t.Fatalf("no kubelab user %s", name)
	return ""
}

// arrive opens a session (with token, if any) and returns its calls'
// context.
func arrive(t *testing.T, c pb.ManagerClient, token string) context.Context {
	t.Helper()
	ctx := context.Background()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, wire.MDAuthorization, "Bearer "+token)
	}
	resp, err := c.Arrive(ctx, &pb.ArriveRequest{User: "alice", Host: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(ctx, wire.MDSession, resp.SessionId, wire.MDSecret, resp.SessionSecret)
}

// Package kubestage puts Tether on the test cluster (internal/kubelab), for
// the end-to-end tests on it (kube/e2e) and make demo-k8s: the chart with
// the lab's image and short timeouts, the test app as a Deployment behind a
// Service, roles granted through the API, and the story's [story.Stage].
// Nothing here is a mock: it is what a cluster admin and a developer would
// do, from Go.
package kubestage

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"helm.sh/helm/v3/pkg/cli/values"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/kube/helm"
	managerpb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// The workload every test and the story use: the test app, answering with
// its pod name and the request's headers, behind Service web.
const (
	Web      = "web"
	WebPort  = 8080   // the Service's port and the app's
	PortName = "http" // the app's named port, the Service's targetPort
	// FirstPort is the app's first-byte port (FIRST_PORT: one byte on
	// accept), named FirstPortName in its pods and behind no Service of
	// DeployWeb's.
	FirstPort     = 8082
	FirstPortName = "first"
	// ManagerNamespace is the chart's default (manager.namespace).
	ManagerNamespace = helm.DefaultNamespace
	// DevGroup is the kubelab users' group (kubelab.Users).
	DevGroup = "tether-dev"
)

// Rules are the manager's rule values an installation gets.
type Rules struct {
	BlockTimeout   time.Duration // intercept.inactiveBlockTimeout
	TTL            time.Duration // grpc.connectionTTL
	ReportInterval time.Duration // activity.reportInterval
}

// Sets are the chart values (helm --set) for the test cluster: the image
// imported into the node, never pulled, and the rules. The manager
// discovers the cluster's networks.
func Sets(r Rules) []string {
	repo, tag, _ := strings.Cut(kubelab.TetherImage, ":")
	return []string{
		"image.repository=" + repo, "image.tag=" + tag, "image.pullPolicy=Never",
		"intercept.inactiveBlockTimeout=" + r.BlockTimeout.String(),
		"grpc.connectionTTL=" + r.TTL.String(),
		"activity.reportInterval=" + r.ReportInterval.String(),
	}
}

// KubeFlags are kubectl's loading rules for one kubeconfig file.
func KubeFlags(kubeconfig string) *genericclioptions.ConfigFlags {
	f := genericclioptions.NewConfigFlags(false)
	f.KubeConfig = &kubeconfig
	return f
}

// Install installs the chart with the Helm SDK as the cluster's admin, with
// Sets(r) and extra values, and waits until the manager is available,
// writing the progress lines to out.
func Install(ctx context.Context, c *kubelab.Cluster, r Rules, out io.Writer, extra ...string) error {
	vals, err := helm.Values(values.Options{Values: append(Sets(r), extra...)})
	if err != nil {
		return err
	}
	// The notes are for people; the progress lines show a slow install.
	return helm.Install(ctx, helm.Options{Kube: KubeFlags(c.Kubeconfig()), Timeout: 3 * time.Minute, Out: io.Discard, Progress: out}, vals)
}

// Upgrade upgrades the release with the values given before and extra
// over them, as `tether helm upgrade --set` does, and waits until the
// manager is available.
func Upgrade(ctx context.Context, c *kubelab.Cluster, out io.Writer, extra ...string) error {
	vals, err := helm.Values(values.Options{Values: extra})
	if err != nil {
		return err
	}
	return helm.Upgrade(ctx, helm.Options{Kube: KubeFlags(c.Kubeconfig()), Timeout: 3 * time.Minute, Out: io.Discard, Progress: out}, vals, false)
}

// Uninstall removes the release and waits until its objects are gone.
func Uninstall(ctx context.Context, c *kubelab.Cluster, out io.Writer) error {
	return helm.Uninstall(ctx, helm.Options{Kube: KubeFlags(c.Kubeconfig()), Timeout: 2 * time.Minute, Out: out, Progress: out})
}

// DeployWeb creates Deployment web of the test app (replicas pods, its
// ports named PortName and FirstPortName) and Service web (WebPort,
// targetPort PortName) in ns, and waits until every pod is ready.
func DeployWeb(ctx context.Context, cs kubernetes.Interface, ns string, replicas int32) error {
	return deployWeb(ctx, cs, ns, replicas, "")
}

// deployWeb is DeployWeb with the Service at clusterIP ("": any).
func deployWeb(ctx context.Context, cs kubernetes.Interface, ns string, replicas int32, clusterIP string) error {
	labels := map[string]string{"app": Web}
	grace := int64(1)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: Web, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name: Web, Image: kubelab.TestAppImage, ImagePullPolicy: corev1.PullNever,
						Ports: []corev1.ContainerPort{{Name: PortName, ContainerPort: WebPort}, {Name: FirstPortName, ContainerPort: FirstPort}},
						Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
							FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
						ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
							HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString(PortName)}}},
					}},
				},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("deployment %s/%s: %w", ns, Web, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: Web, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector:  labels,
			ClusterIP: clusterIP,
			Ports:     []corev1.ServicePort{{Name: PortName, Port: WebPort, TargetPort: intstr.FromString(PortName)}},
		},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("service %s/%s: %w", ns, Web, err)
	}
	return WaitRolledOut(ctx, cs, ns, Web, 2*time.Minute)
}

// WaitRolledOut waits until Deployment ns/name has all its pods updated and
// ready and no old ones left, as kubectl rollout status does.
func WaitRolledOut(ctx context.Context, cs kubernetes.Interface, ns, name string, limit time.Duration) error {
	return Poll(ctx, "deployment "+ns+"/"+name+" rolled out", limit, func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		st := d.Status
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != want || st.Replicas != want || st.AvailableReplicas != want {
			return fmt.Errorf("generation %d observed %d, replicas %d updated %d available %d, want %d",
				d.Generation, st.ObservedGeneration, st.Replicas, st.UpdatedReplicas, st.AvailableReplicas, want)
		}
		return nil
	})
}

// Poll calls f every 250 ms until it returns nil, for at most limit; the
// error names what and carries f's last.
func Poll(ctx context.Context, what string, limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s: %w", what, limit, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Grant creates or replaces Role name in ns with rules and binds it to the
// subjects (see User and Group).
func Grant(ctx context.Context, cs kubernetes.Interface, ns, name string, rules []rbacv1.PolicyRule, subjects ...rbacv1.Subject) error {
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: rules}
	if err := cs.RbacV1().Roles(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("role %s/%s: %w", ns, name, err)
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("role %s/%s: %w", ns, name, err)
	}
	return Bind(ctx, cs, ns, name, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}, subjects...)
}

// Bind creates or replaces RoleBinding name in ns of ref to the subjects:
// the manager's namespace outlives a release, and its bindings with it.
func Bind(ctx context.Context, cs kubernetes.Interface, ns, name string, ref rbacv1.RoleRef, subjects ...rbacv1.Subject) error {
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, RoleRef: ref, Subjects: subjects}
	err := cs.RbacV1().RoleBindings(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("rolebinding %s/%s: %w", ns, name, err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("rolebinding %s/%s: %w", ns, name, err)
	}
	return nil
}

// User and Group are RBAC subjects.
func User(name string) rbacv1.Subject {
	return rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: "User", Name: name}
}

// Group is an RBAC group subject.
func Group(name string) rbacv1.Subject {
	return rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: "Group", Name: name}
}

// BindDevelopers binds the chart's developer roles to DevGroup: the Role
// tether-developer in the manager's namespace (connect) and the ClusterRole
// tether-developer in each workload namespace (list, intercept).
func BindDevelopers(ctx context.Context, cs kubernetes.Interface, workloadNamespaces ...string) error {
	err := Bind(ctx, cs, ManagerNamespace, "tether-developers",
		rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "tether-developer"}, Group(DevGroup))
	for _, ns := range workloadNamespaces {
		err = errors.Join(err, Bind(ctx, cs, ns, "tether-developers",
			rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tether-developer"}, Group(DevGroup)))
	}
	return err
}

// RevokeRules are what `tether revoke` needs: get and update on configmap
// traffic-manager in the manager's namespace.
var RevokeRules = []rbacv1.PolicyRule{{
	APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"traffic-manager"},
	Verbs: []string{"get", "update"},
}}

// GrantRevoke lets user revoke others' intercepts.
func GrantRevoke(ctx context.Context, cs kubernetes.Interface, user string) error {
	return Grant(ctx, cs, ManagerNamespace, "tether-revoke-"+user, RevokeRules, User(user))
}

// ClusterIP is the ClusterIP of Service ns/name.
func ClusterIP(ctx context.Context, cs kubernetes.Interface, ns, name string) (string, error) {
	svc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return svc.Spec.ClusterIP, nil
}

// ManagerPod is the name of a running, ready traffic-manager pod.
func ManagerPod(ctx context.Context, cs kubernetes.Interface) (string, error) {
	pods, err := cs.CoreV1().Pods(ManagerNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=traffic-manager"})
	if err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return p.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no ready traffic-manager pod among %d in %s", len(pods.Items), ManagerNamespace)
}

// ManagerAnswers waits up to 30 s until the manager answers: a Deployment
// without a readiness probe (the manager on its pod's loopback) is
// available before the manager listens.
func ManagerAnswers(ctx context.Context, rc *rest.Config, cs kubernetes.Interface, token string) error {
	return Poll(ctx, "the traffic manager answers", 30*time.Second, func() error { return managerAnswers(ctx, rc, cs, token) })
}

// managerAnswers reaches the manager's pod through an API-server
// port-forward, as the admin, and makes one gRPC call: any answer of the
// manager's (a refusal too) proves it serves; only an unreachable port or a
// dead connection fails. The call is tried in plaintext and then with TLS
// (unverified: this checks that the manager answers, not who it is).
func managerAnswers(ctx context.Context, rc *rest.Config, cs kubernetes.Interface, token string) error {
	pod, err := ManagerPod(ctx, cs)
	if err != nil {
		return err
	}
	addr, stop, err := PortForward(ctx, rc, cs, ManagerNamespace, pod, 8081)
	if err != nil {
		return err
	}
	defer stop()
	var errs []error
	for _, creds := range []credentials.TransportCredentials{insecure.NewCredentials(), credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})} {
		err := call(ctx, addr, creds, token)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("the traffic manager (pod %s/%s) does not answer: %w", ManagerNamespace, pod, errors.Join(errs...))
}

func call(ctx context.Context, addr string, creds credentials.TransportCredentials, token string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, wire.MDAuthorization, "Bearer "+token)
	_, err = managerpb.NewManagerClient(conn).Sessions(ctx, &managerpb.SessionsRequest{})
	if c := status.Code(err); c == codes.Unavailable || c == codes.DeadlineExceeded {
		return err
	}
	return nil
}

// PortForward forwards a local port on 127.0.0.1 to port of pod ns/name
// through the API server (client-go, as kubectl port-forward) and returns
// the local address and the stop.
func PortForward(ctx context.Context, rc *rest.Config, cs kubernetes.Interface, ns, pod string, port int) (addr string, stop func(), err error) {
	transport, upgrader, err := spdy.RoundTripperFor(rc)
	if err != nil {
		return "", nil, err
	}
	url := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	stopCh, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stopCh, ready, io.Discard, io.Discard)
	if err != nil {
		return "", nil, err
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	stop = func() {
		close(stopCh)
		<-done
	}
	select {
	case <-ready:
	case err := <-done:
		return "", nil, fmt.Errorf("port-forward to %s/%s: %w", ns, pod, err)
	case <-ctx.Done():
		stop()
		return "", nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		stop()
		return "", nil, fmt.Errorf("port-forward to %s/%s: ports %v: %w", ns, pod, ports, err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0].Local), stop, nil
}

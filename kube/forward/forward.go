// Package forward reaches the traffic manager in a cluster through an
// API-server port-forward with the user's kubeconfig identity: a gRPC
// ClientConn whose dialer opens a port-forward stream to a ready pod of the
// manager's Service (picked again on every reconnect, so a restarted pod is
// found), and which adds the user's bearer token to every call or presents
// the user's client certificate in TLS to the manager. The tether forwarder
// (a process of the user) serves it to the root daemon through
// internal/grpcproxy; the credentials never leave that process.
package forward

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport"
	"k8s.io/client-go/transport/spdy"
	streamhttp "k8s.io/streaming/pkg/httpstream"

	"github.com/tether-dev/tether/tunnel"
	"github.com/tether-dev/tether/wire"
)

// Names the chart gives the manager's objects.
const (
	ServiceName = "traffic-manager"
	// CAConfigMap holds, under CAKey, the CA that issued the manager's
	// gRPC certificate (the chart's traffic-manager-tls).
	CAConfigMap = "traffic-manager-ca"
	CAKey       = "ca.crt"
	// portName is the Service port of the manager's gRPC.
	portName = "grpc"
)

// Kubeconfig selects a kubeconfig context as kubectl does: an explicit file
// (--kubeconfig), else KUBECONFIG, else ~/.kube/config; Context empty is
// the current context.
type Kubeconfig struct {
	Path, Context string
}

// Loaded is a kubeconfig context resolved.
type Loaded struct {
	Context   string // the context's name
	Namespace string // the context's namespace ("default" when it names none)
	REST      *rest.Config
}

// Load resolves k with kubectl's loading rules.
func Load(k Kubeconfig) (*Loaded, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.Path
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.Context})
	raw, err := cc.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	name := k.Context
	if name == "" {
		name = raw.CurrentContext
	}
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w (give --kubeconfig or --context, or set KUBECONFIG)", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return &Loaded{Context: name, Namespace: ns, REST: rc}, nil
}

// Config is what a Forwarder needs.
type Config struct {
	Kube      *Loaded
	Namespace string // the manager's namespace (manager.namespace)
	Log       *slog.Logger
	// OnPod is called with each pod a new connection goes to.
	OnPod func(pod string)
}

// Forwarder is the manager's ClientConn through a port-forward. It is
// alive until Close.
type Forwarder struct {
	cfg    Config
	client kubernetes.Interface
	log    *slog.Logger
	id     *identity
	cc     *grpc.ClientConn
	tls    bool

	mu  sync.Mutex // guards pod
	pod string     // the pod of the newest connection
}

// New checks that the manager's Service exists and can be reached and
// returns its ClientConn (not yet connected). Errors name the missing
// permission or object.
func New(ctx context.Context, cfg Config) (*Forwarder, error) {
	rc := rest.CopyConfig(cfg.Kube.REST)
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	f := &Forwarder{cfg: cfg, client: client, log: cfg.Log.With("component", "forward", "context", cfg.Kube.Context, "namespace", cfg.Namespace)}
	if f.id, err = newIdentity(rc); err != nil {
		return nil, err
	}
	if _, _, err := f.pickPod(ctx); err != nil {
		return nil, err
	}
	creds, err := f.managerTLS(ctx)
	if err != nil {
		return nil, err
	}
	opts := append(tunnel.DialOptions(creds), grpc.WithContextDialer(f.dial), grpc.WithPerRPCCredentials(f.id))
	// The dialer ignores the address; the authority is the Service's
	// name, which the manager's certificate carries.
	f.cc, err = grpc.NewClient("passthrough:///"+f.serverName(), opts...)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// ClientConn is the manager's ClientConn; it stays the Forwarder's.
func (f *Forwarder) ClientConn() *grpc.ClientConn { return f.cc }

// TLS says whether the manager is verified with the chart's CA.
func (f *Forwarder) TLS() bool { return f.tls }

// Pod is the pod of the newest connection ("" before the first).
func (f *Forwarder) Pod() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pod
}

// Close closes the ClientConn and with it every port-forward.
func (f *Forwarder) Close() error { return f.cc.Close() }

func (f *Forwarder) serverName() string {
	return ServiceName + "." + f.cfg.Namespace + ".svc"
}

// managerTLS is TLS to the manager verified with the chart's CA, with the
// user's client certificate when the kubeconfig has one; nil (plaintext
// inside the port-forward) when the chart issued no certificate.
func (f *Forwarder) managerTLS(ctx context.Context) (credentials.TransportCredentials, error) {
	cm, err := f.client.CoreV1().ConfigMaps(f.cfg.Namespace).Get(ctx, CAConfigMap, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if f.id.hasCert() {
			return nil, fmt.Errorf("the manager in namespace %s serves no TLS (no configmap %s), and your kubeconfig identifies you by a client certificate, which needs TLS: install the chart with its default TLS", f.cfg.Namespace, CAConfigMap)
		}
		f.log.Warn("the manager serves no TLS (no configmap " + CAConfigMap + "): the token travels in clear text from the kubelet to the manager's pod")
		return nil, nil
	case err != nil:
		return nil, kubeError(err, "get configmap "+CAConfigMap, f.cfg.Namespace)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cm.Data[CAKey])) {
		return nil, fmt.Errorf("configmap %s/%s: key %s holds no PEM certificate", f.cfg.Namespace, CAConfigMap, CAKey)
	}
	f.tls = true
	tc := &tls.Config{RootCAs: pool, ServerName: f.serverName(), MinVersion: tls.VersionTLS12}
	f.id.clientCert(tc)
	return credentials.NewTLS(tc), nil
}

// pickPod is a ready, running pod behind the manager's Service and the
// pod's port for the Service's grpc port, as kubectl port-forward svc/...
// resolves it.
func (f *Forwarder) pickPod(ctx context.Context) (string, int, error) {
	ns := f.cfg.Namespace
	svc, err := f.client.CoreV1().Services(ns).Get(ctx, ServiceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", 0, fmt.Errorf("no traffic manager in namespace %s (service %s not found): install it with `tether helm install`, or give its namespace (--manager-namespace)", ns, ServiceName)
	}
	if err != nil {
		return "", 0, kubeError(err, "get service "+ServiceName, ns)
	}
	if len(svc.Spec.Ports) == 0 || len(svc.Spec.Selector) == 0 {
		return "", 0, fmt.Errorf("service %s/%s has no ports or no selector", ns, ServiceName)
	}
	sp := svc.Spec.Ports[0]
	for _, p := range svc.Spec.Ports {
		if p.Name == portName {
			sp = p
		}
	}
	pods, err := f.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return "", 0, kubeError(err, "list pods", ns)
	}
	ready := make([]corev1.Pod, 0, len(pods.Items))
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(&p) {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return "", 0, fmt.Errorf("no ready pod behind service %s/%s (%d pods): is the manager running? `kubectl -n %s get pods`", ns, ServiceName, len(pods.Items), ns)
	}
	// The newest ready pod: after a rollout the old one is going away.
	sort.Slice(ready, func(i, j int) bool { return ready[j].CreationTimestamp.Before(&ready[i].CreationTimestamp) })
	pod := &ready[0]
	port, err := targetPort(sp.TargetPort, sp.Port, pod)
	if err != nil {
		return "", 0, fmt.Errorf("service %s/%s: %w", ns, ServiceName, err)
	}
	return pod.Name, port, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// targetPort is the pod's port for a Service port's targetPort.
func targetPort(tp intstr.IntOrString, svcPort int32, pod *corev1.Pod) (int, error) {
	switch {
	case tp.Type == intstr.Int && tp.IntVal == 0:
		return int(svcPort), nil
	case tp.Type == intstr.Int:
		return int(tp.IntVal), nil
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == tp.StrVal {
				return int(p.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("pod %s has no port named %q", pod.Name, tp.StrVal)
}

// dial opens a port-forward to a ready pod of the manager: one upgraded
// connection to the API server per gRPC connection, so a broken pod ends
// both and the next dial picks a pod again.
func (f *Forwarder) dial(ctx context.Context, _ string) (net.Conn, error) {
	pod, port, err := f.pickPod(ctx)
	if err != nil {
		f.log.Warn("no pod to forward to", "error", err)
		return nil, err
	}
	rc := f.cfg.Kube.REST
	u := f.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(f.cfg.Namespace).Name(pod).SubResource("portforward").URL()
	rt, upgrader, err := spdy.RoundTripperFor(rc)
	if err != nil {
		return nil, err
	}
	var dialer streamhttp.Dialer = spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	// Websockets first, as kubectl does, SPDY where the API server or a
	// proxy on the way does not upgrade to them.
	ws, err := portforward.NewSPDYOverWebsocketDialerForStreaming(u, rc)
	if err != nil {
		return nil, err
	}
	dialer = portforward.NewFallbackDialerForStreaming(ws, dialer, func(err error) bool {
		return streamhttp.IsUpgradeFailure(err) || streamhttp.IsHTTPSProxyError(err)
	})
	type dialed struct {
		conn streamhttp.Connection
		err  error
	}
	// Dial takes no context: a cancelled dial closes what arrives late.
	ch := make(chan dialed, 1)
	go func() {
		conn, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
		ch <- dialed{conn, err}
	}()
	var d dialed
	select {
	case d = <-ch:
	case <-ctx.Done():
		go func() {
			if d := <-ch; d.conn != nil {
				d.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
	if d.err != nil {
		err := kubeError(d.err, "create pods/portforward", f.cfg.Namespace)
		f.log.Warn("port-forward failed", "pod", pod, "error", err)
		return nil, err
	}
	c, err := newStreamConn(d.conn, port, f.log.With("pod", pod))
	if err != nil {
		d.conn.Close()
		return nil, err
	}
	f.mu.Lock()
	changed := f.pod != pod
	f.pod = pod
	f.mu.Unlock()
	f.log.Info("port-forward open", "pod", pod, "port", port)
	if changed && f.cfg.OnPod != nil {
		f.cfg.OnPod(pod)
	}
	return c, nil
}

// kubeError says what the user can do about an API error.
func kubeError(err error, what, ns string) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s in namespace %s: forbidden: your kubeconfig user needs the chart's Role tether-developer there (developers.users/groups, or a RoleBinding): %w", what, ns, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: the API server does not accept your kubeconfig's credentials (log in again?): %w", what, err)
	}
	return fmt.Errorf("%s in namespace %s: %w", what, ns, err)
}

// streamConn is a net.Conn on one port-forward data stream.
type streamConn struct {
	conn      streamhttp.Connection
	data      streamhttp.Stream
	closeOnce sync.Once
}

func newStreamConn(conn streamhttp.Connection, port int, log *slog.Logger) (*streamConn, error) {
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, "0")
	errStream, err := conn.CreateStream(h)
	if err != nil {
		return nil, fmt.Errorf("port-forward error stream: %w", err)
	}
	errStream.Close() // nothing to send on it
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(h)
	if err != nil {
		return nil, fmt.Errorf("port-forward data stream: %w", err)
	}
	c := &streamConn{conn: conn, data: data}
	go func() {
		// The kubelet reports a failed dial to the pod's port here, and
		// the connection is then useless.
		msg, err := io.ReadAll(errStream)
		if len(msg) > 0 || err != nil {
			log.Warn("port-forward ended by the kubelet", "message", string(msg), "error", err)
			c.Close()
		}
	}()
	return c, nil
}

func (c *streamConn) Read(b []byte) (int, error)  { return c.data.Read(b) }
func (c *streamConn) Write(b []byte) (int, error) { return c.data.Write(b) }

func (c *streamConn) Close() error {
	var err error
	c.closeOnce.Do(func() { err = errors.Join(c.data.Reset(), c.conn.Close()) })
	return err
}

type pfAddr struct{}

func (pfAddr) Network() string { return "portforward" }
func (pfAddr) String() string  { return "portforward" }

func (c *streamConn) LocalAddr() net.Addr  { return pfAddr{} }
func (c *streamConn) RemoteAddr() net.Addr { return pfAddr{} }

// Deadlines are not supported by the streams; gRPC's keepalive finds a
// dead port-forward instead.
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// identity is the user's kubeconfig identity, as client-go would present
// it to the API server: a bearer token (static, from a file that is read
// again as it changes, or from an exec or auth-provider plugin, which runs
// in this process), or a client certificate (static, or from an exec
// plugin).
type identity struct {
	rt  http.RoundTripper // client-go's auth wrappers around capture
	tls *tls.Config       // client-go's TLS config: the client certificate
}

func newIdentity(rc *rest.Config) (*identity, error) {
	tc, err := rc.TransportConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig credentials: %w", err)
	}
	rt, err := transport.HTTPWrappersForConfig(tc, capture{})
	if err != nil {
		return nil, fmt.Errorf("kubeconfig credentials: %w", err)
	}
	tlsc, err := transport.TLSConfigFor(tc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig credentials: %w", err)
	}
	return &identity{rt: rt, tls: tlsc}, nil
}

// hasCert says whether the kubeconfig presents a client certificate now;
// with an exec plugin that asks the plugin, which may return one or a token.
func (i *identity) hasCert() bool {
	switch {
	case i.tls == nil:
		return false
	case len(i.tls.Certificates) > 0:
		return true
	case i.tls.GetClientCertificate != nil:
		c, err := i.tls.GetClientCertificate(&tls.CertificateRequestInfo{})
		return err == nil && c != nil && len(c.Certificate) > 0
	}
	return false
}

// clientCert makes tc present the user's client certificate, if any.
func (i *identity) clientCert(tc *tls.Config) {
	if i.tls == nil {
		return
	}
	tc.GetClientCertificate = i.tls.GetClientCertificate
	tc.Certificates = i.tls.Certificates
}

// GetRequestMetadata is the Authorization header client-go's wrappers put
// on a request to the API server, now.
func (i *identity) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://manager.invalid/", nil)
	if err != nil {
		return nil, err
	}
	resp, err := i.rt.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig credentials: %w", err)
	}
	resp.Body.Close()
	if a := resp.Header.Get(capturedHeader); a != "" {
		return map[string]string{wire.MDAuthorization: a}, nil
	}
	return nil, nil
}

// RequireTransportSecurity is false: without the chart's TLS the token
// still travels inside the port-forward (TLS to the API server).
func (*identity) RequireTransportSecurity() bool { return false }

const capturedHeader = "X-Tether-Captured-Authorization"

// capture answers every request itself, returning the Authorization header
// the wrappers set.
type capture struct{}

func (capture) RoundTrip(req *http.Request) (*http.Response, error) {
	h := http.Header{}
	if a := req.Header.Get("Authorization"); a != "" {
		h.Set(capturedHeader, a)
	}
	return &http.Response{StatusCode: http.StatusOK, Header: h, Body: http.NoBody, Request: req}, nil
}

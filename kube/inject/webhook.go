package inject

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Path is where the webhook answers AdmissionReviews.
const Path = "/inject"

// WebhookName is the chart's MutatingWebhookConfiguration for a manager in
// namespace: cluster-scoped, so named after it.
func WebhookName(namespace string) string { return "tether-agent-injector-" + namespace }

// ServiceName is the manager's Service, the webhook's host in the cluster.
const ServiceName = "traffic-manager"

// maxReview bounds an AdmissionReview's body: a pod is far smaller.
const maxReview = 4 << 20

// Webhook is the mutating admission webhook: HTTPS with a certificate made
// at start for the manager's Service, whose CA it patches into the
// MutatingWebhookConfiguration. It is alive until Run returns.
type Webhook struct {
	client    kubernetes.Interface
	namespace string
	agent     Agent
	log       *slog.Logger
	ln        net.Listener
	cert      tls.Certificate
	caPEM     []byte
	// reachable is closed once the webhook answered through its Service.
	reachable chan struct{}
}

// probeEvery is how often the webhook dials itself through its Service
// until it answers: nothing to watch says when the API server's calls reach
// it (the pod's readiness, the Service's endpoints, kube-proxy, each in
// turn); probeWarnAfter is when it says it does not.
const (
	probeEvery     = time.Second
	probeWarnAfter = time.Minute
)

// NewWebhook listens on addr and makes the serving certificate for
// ServiceName in namespace.
func NewWebhook(client kubernetes.Interface, namespace, addr string, agent Agent, log *slog.Logger) (*Webhook, error) {
	if log == nil {
		log = slog.Default()
	}
	host := ServiceName + "." + namespace + ".svc"
	cert, caPEM, err := selfSigned([]string{host, host + ".cluster.local", ServiceName + "." + namespace}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("webhook certificate: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("webhook.port: %w", err)
	}
	return &Webhook{client: client, namespace: namespace, agent: agent, log: log.With("component", "webhook"),
		ln: ln, cert: cert, caPEM: caPEM, reachable: make(chan struct{})}, nil
}

// Addr is where the webhook listens.
func (wh *Webhook) Addr() net.Addr { return wh.ln.Addr() }

// CA is the PEM certificate that the serving certificate chains to.
func (wh *Webhook) CA() []byte { return wh.caPEM }

// Reachable is closed once the caBundle is patched and the webhook
// answered through its Service (ServiceName, on its own port, as the chart
// has it) with its certificate: from then on the API server's calls reach
// it, and a pod created gets its agent.
func (wh *Webhook) Reachable() <-chan struct{} { return wh.reachable }

// Run patches the caBundle in and serves until ctx ends. A caBundle that
// cannot be patched is logged, not fatal: the webhook's failurePolicy
// Ignore keeps pods starting, without agents, and intercepts wait.
func (wh *Webhook) Run(ctx context.Context) error {
	pctx, stopProbe := context.WithCancel(ctx)
	var probing sync.WaitGroup
	defer probing.Wait()
	defer stopProbe()
	if err := wh.PatchCABundle(ctx); err != nil {
		wh.log.Error("agents will not be injected", "error", err)
	} else {
		probing.Go(func() { wh.probe(pctx) })
	}
	mux := http.NewServeMux()
	mux.HandleFunc(Path, wh.serve)
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{wh.cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(wh.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(wh.ln, "", "") }()
	wh.log.Info("webhook serving", "addr", wh.ln.Addr().String(), "path", Path)
	select {
	case err := <-errc:
		return fmt.Errorf("webhook: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := srv.Shutdown(shut)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, e)
	}
	wh.log.Info("webhook stopped")
	return err
}

// probe dials the webhook through its Service until the TLS handshake
// verifies its certificate, then closes reachable; or until ctx ends.
func (wh *Webhook) probe(ctx context.Context) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(wh.caPEM)
	host := ServiceName + "." + wh.namespace + ".svc"
	_, port, err := net.SplitHostPort(wh.ln.Addr().String())
	if err != nil {
		wh.log.Error("pods without their agent are not replaced", "error", err)
		return
	}
	addr := net.JoinHostPort(host, port)
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: probeEvery}, Config: &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}}
	start := time.Now()
	warned := false
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.Close()
			wh.log.Info("webhook reachable through its Service", "service", addr, "after", time.Since(start).Round(time.Millisecond))
			close(wh.reachable)
			return
		}
		if !warned && time.Since(start) > probeWarnAfter {
			warned = true
			wh.log.Warn("webhook not reachable through its Service: pods of intercepted workloads that started without their agent are not replaced until it is",
				"service", addr, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// PatchCABundle puts the webhook's CA into every webhook of the
// MutatingWebhookConfiguration (a strategic merge by webhook name).
func (wh *Webhook) PatchCABundle(ctx context.Context) error {
	name := WebhookName(wh.namespace)
	mwc, err := wh.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("mutatingwebhookconfiguration %s (the chart's; the manager needs get and patch on it): %w", name, err)
	}
	type hook struct {
		Name         string         `json:"name"`
		ClientConfig map[string]any `json:"clientConfig"`
	}
	var hooks []hook
	for _, h := range mwc.Webhooks {
		hooks = append(hooks, hook{h.Name, map[string]any{"caBundle": wh.caPEM}})
	}
	data, err := json.Marshal(map[string]any{"webhooks": hooks})
	if err != nil {
		return err
	}
	if _, err := wh.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, name, types.StrategicMergePatchType, data, metav1.PatchOptions{FieldManager: "tether-manager"}); err != nil {
		return fmt.Errorf("patch the caBundle of mutatingwebhookconfiguration %s: %w", name, err)
	}
	wh.log.Info("caBundle patched", "mutatingwebhookconfiguration", name, "webhooks", len(hooks))
	return nil
}

// serve answers one AdmissionReview. A pod it cannot change is admitted
// unchanged, with a warning: a refusal would stop the workload's rollout.
func (wh *Webhook) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReview))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	req := review.Request
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if ops, workload, err := wh.review(req); err != nil {
		wh.log.Warn("pod admitted without its agent", "namespace", req.Namespace, "pod", req.Name, "error", err)
		resp.Warnings = []string{"tether: no agent injected: " + err.Error()}
	} else if len(ops) > 0 {
		patch, err := json.Marshal(ops)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
		wh.log.Info("agent injected", "namespace", req.Namespace, "workload", req.Namespace+"/"+workload)
	}
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// review is the patch for req's pod and the workload it belongs to.
func (wh *Webhook) review(req *admissionv1.AdmissionRequest) ([]PatchOp, string, error) {
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return nil, "", nil
	}
	if req.Namespace == wh.namespace {
		return nil, "", fmt.Errorf("namespace %s is the traffic manager's", req.Namespace)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return nil, "", fmt.Errorf("decode the pod: %w", err)
	}
	ops, err := wh.agent.Mutate(&pod, req.Namespace)
	return ops, pod.Annotations[AnnotationWorkload], err
}

// selfSigned makes a CA and a serving certificate for hosts signed by it,
// valid for a year from now: the manager makes new ones at each start.
func selfSigned(hosts []string, now time.Time) (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial := func() *big.Int {
		n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
		return n
	}
	ca := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "tether agent injector CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caPEM, nil
}

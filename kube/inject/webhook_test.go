package inject

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// The serving certificate is for the manager's Service names and chains to
// the CA the webhook patches in.
func TestSelfSigned(t *testing.T) {
	hosts := []string{"traffic-manager.tether.svc", "traffic-manager.tether.svc.cluster.local"}
	cert, caPEM, err := selfSigned(hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA is not PEM")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: pool}); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "evil.example", Roots: pool}); err == nil {
		t.Error("verifies for another host")
	}
}

// review posts an AdmissionReview of pod's creation in namespace to the
// webhook, over TLS verified with its CA, and returns the response.
func review(t *testing.T, srv *httptest.Server, pool *x509.CertPool, namespace string, pod *corev1.Pod) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: types.UID("uid-1"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Operation: admissionv1.Create, Namespace: namespace, Object: runtime.RawExtension{Raw: raw}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "traffic-manager.tether.svc"}}}
	resp, err := c.Post(srv.URL+Path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &ar); err != nil || ar.Response == nil {
		t.Fatalf("answer %s: %v", out, err)
	}
	if ar.Kind != "AdmissionReview" || ar.APIVersion != "admission.k8s.io/v1" || ar.Response.UID != "uid-1" {
		t.Fatalf("answer %s", out)
	}
	return ar.Response
}

// The webhook answers the API server: a JSON patch for a marked pod, the
// pod unchanged (and a warning) when it cannot inject, never a refusal.
func TestWebhookServe(t *testing.T) {
	cert, caPEM, err := selfSigned([]string{"traffic-manager.tether.svc"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wh := &Webhook{namespace: "tether", agent: testAgent, log: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	mux.HandleFunc(Path, wh.serve)
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)

	marked := appPod("8080", corev1.ContainerPort{Name: "http", ContainerPort: 8080})
	for _, tc := range []struct {
		name      string
		namespace string
		pod       *corev1.Pod
		patched   bool
		warning   string
	}{
		{"marked pod patched", "shop", marked, true, ""},
		{"unmarked pod unchanged", "shop", appPod("", corev1.ContainerPort{Name: "http", ContainerPort: 8080}), false, ""},
		{"the manager's namespace never", "tether", marked, false, "namespace tether is the traffic manager's"},
		{"a pod it cannot change admitted as it is", "shop", appPod("8080", corev1.ContainerPort{ContainerPort: 8080}), false, "tether: no agent injected: container app's port 8080 has no name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := review(t, srv, pool, tc.namespace, tc.pod)
			if !resp.Allowed {
				t.Fatalf("refused: %+v", resp)
			}
			if tc.patched != (resp.Patch != nil) || (tc.patched && *resp.PatchType != admissionv1.PatchTypeJSONPatch) {
				t.Fatalf("patch %s type %v, want patched %v", resp.Patch, resp.PatchType, tc.patched)
			}
			if tc.patched {
				var ops []PatchOp
				if err := json.Unmarshal(resp.Patch, &ops); err != nil {
					t.Fatal(err)
				}
				if got := mutated(t, tc.pod, ops); container(got, ContainerName) == nil {
					t.Fatalf("no agent after the patch: %s", resp.Patch)
				}
			}
			if tc.warning != "" && (len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], tc.warning)) {
				t.Fatalf("warnings %q, want %q", resp.Warnings, tc.warning)
			}
		})
	}
}

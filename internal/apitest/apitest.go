// Package apitest runs a real etcd and kube-apiserver on loopback for
// tests of the Kubernetes adapters (the envtest pattern: no kubelet, no
// controllers): a fake clientset proves nothing about Kubernetes.
package apitest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// bins is where etcd and kube-apiserver are: TETHER_KUBE_BINS, or what
// `make kube-bins` builds into the module's bin/kube.
func bins() string {
	if d := os.Getenv("TETHER_KUBE_BINS"); d != "" {
		return d
	}
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin", "kube")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return filepath.Join("bin", "kube")
		}
		dir = parent
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs etcd and kube-apiserver until the test ends and returns an
// admin's config. It skips the test when the binaries are not built.
func Start(t testing.TB) *rest.Config {
	t.Helper()
	bins := bins()
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(bins, b)); err != nil {
			t.Skipf("no %s in %s: build it with `make kube-bins` or point TETHER_KUBE_BINS at it", b, bins)
		}
	}
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var procs []*exec.Cmd
	t.Cleanup(func() {
		cancel()
		for _, p := range procs {
			_ = p.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			var lines []string
			for _, l := range strings.Split(string(b), "\n") {
				if !strings.Contains(l, "transport is closing") {
					lines = append(lines, l)
				}
			}
			t.Logf("etcd and kube-apiserver, last lines:\n%s", strings.Join(lines[max(len(lines)-30, 0):], "\n"))
		}
		logf.Close()
	})
	start := func(name string, args ...string) {
		cmd := exec.CommandContext(ctx, filepath.Join(bins, name), args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
	}
	client, peer, secure := freePort(t), freePort(t), freePort(t)
	start("etcd", "--name", "test", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-cluster", fmt.Sprintf("test=http://127.0.0.1:%d", peer), "--unsafe-no-fsync", "--log-level", "warn")

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(dir, "sa.key")
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	tokens := filepath.Join(dir, "tokens.csv")
	for path, data := range map[string][]byte{saKey: pemKey, tokens: []byte(`admin-token,admin,1,"system:masters"` + "\n")} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start("kube-apiserver", "--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", client),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", fmt.Sprint(secure),
		"--cert-dir", filepath.Join(dir, "certs"), "--token-auth-file", tokens, "--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "198.19.0.0/24",
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey, "--profiling=false",
		// No kubernetes Service endpoints: it would need a non-loopback address.
		"--endpoint-reconciler-type", "none")

	cfg := &rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", secure), BearerToken: "admin-token",
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		rcancel()
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return cfg
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 90s: %v %s", err, body)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Kubeconfig writes a kubeconfig file for cfg (a token and an API server
// without a verified certificate) and returns its path.
func Kubeconfig(t testing.TB, cfg *rest.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: test, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
`, cfg.Host, cfg.BearerToken)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

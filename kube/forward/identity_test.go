package forward

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The identity is what client-go would present to the API server: the
// bearer token of a static token, a token file, or an exec plugin (run by
// this process), or the kubeconfig's client certificate.
func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ran := filepath.Join(dir, "plugin-ran")
	plugin := filepath.Join(dir, "plugin")
	if err := os.WriteFile(plugin, []byte(`#!/bin/sh
echo "$$" > `+ran+`
echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-token"}}'
`), 0o700); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := clientCert(t, "carol")
	for _, tc := range []struct {
		name   string
		cfg    rest.Config
		auth   string
		cert   bool
		plugin bool
	}{
		{name: "static token", cfg: rest.Config{BearerToken: "static-token"}, auth: "Bearer static-token"},
		{name: "token file", cfg: rest.Config{BearerTokenFile: tokenFile}, auth: "Bearer file-token"},
		{name: "exec plugin", cfg: rest.Config{ExecProvider: &clientcmdapi.ExecConfig{Command: plugin, APIVersion: "client.authentication.k8s.io/v1", InteractiveMode: clientcmdapi.NeverExecInteractiveMode}},
			auth: "Bearer exec-token", plugin: true},
		{name: "client certificate", cfg: rest.Config{TLSClientConfig: rest.TLSClientConfig{CertData: certPEM, KeyData: keyPEM}}, cert: true},
		{name: "nothing", cfg: rest.Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(ran)
			tc.cfg.Host = "https://198.18.0.1:6443"
			id, err := newIdentity(&tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			md, err := id.GetRequestMetadata(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := md["authorization"]; got != tc.auth {
				t.Errorf("authorization %q, want %q", got, tc.auth)
			}
			if id.hasCert() != tc.cert {
				t.Errorf("client certificate: %v, want %v", id.hasCert(), tc.cert)
			}
			if tc.cert {
				tcfg := &tls.Config{}
				id.clientCert(tcfg)
				var got *tls.Certificate
				if tcfg.GetClientCertificate != nil {
					got, err = tcfg.GetClientCertificate(&tls.CertificateRequestInfo{})
				} else if len(tcfg.Certificates) > 0 {
					got = &tcfg.Certificates[0]
				}
				if err != nil || got == nil || len(got.Certificate) == 0 {
					t.Fatalf("no client certificate for the manager's TLS: %v", err)
				}
				leaf, err := x509.ParseCertificate(got.Certificate[0])
				if err != nil || leaf.Subject.CommonName != "carol" {
					t.Fatalf("client certificate %v %v, want carol's", leaf, err)
				}
			}
			if _, err := os.Stat(ran); (err == nil) != tc.plugin {
				t.Errorf("the exec plugin ran: %v, want %v", err == nil, tc.plugin)
			}
		})
	}
}

func clientCert(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

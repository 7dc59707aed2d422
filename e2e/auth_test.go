package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTokenAndTLS: a manager with a token file and TLS identifies users by
// token and is verified by the client's CA.
func TestTokenAndTLS(t *testing.T) {
	var dir string
	e := newEnv(t, envOptions{
		prepare: func(e *env) {
			dir = e.dir
			writeCerts(t, dir, e.lab.MgrIP.String())
			os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte("t-alice,alice,1001,\"devs\"\n"), 0o600)
			os.WriteFile(filepath.Join(dir, "alice.token"), []byte("t-alice\n"), 0o600)
		},
		mgrArgsFunc: func(e *env) []string {
			return []string{"--token-file", filepath.Join(e.dir, "tokens.csv"),
				"--tls-cert-file", filepath.Join(e.dir, "server.pem"), "--tls-key-file", filepath.Join(e.dir, "server.key")}
		},
		connectArgsFunc: func(e *env) []string {
			return []string{"--ca-file", filepath.Join(e.dir, "ca.pem"), "--token-file", filepath.Join(e.dir, "alice.token")}
		},
	})
	if st := e.status(); st["user"] != "alice" {
		t.Fatalf("user %v, want alice (from the token)", st["user"])
	}
	if out, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "5", "http://"+e.podAddr(portHTTP)+"/"); err != nil {
		t.Fatalf("curl over a TLS link: %v\n%s", err, out)
	}
	// A restarted daemon resumes over TLS, with the token, by itself.
	e.restartDaemon()
	if st := e.status(); st["user"] != "alice" {
		t.Fatalf("after a daemon restart: user %v, want alice", st["user"])
	}
	if out, err := e.run(e.lab.Client, "curl", "-sS", "--max-time", "5", "http://"+e.podAddr(portHTTP)+"/"); err != nil {
		t.Fatalf("curl after a daemon restart: %v\n%s", err, out)
	}
	if _, err := e.tether("quit"); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"no token":   {"--ca-file", filepath.Join(dir, "ca.pem")},
		"plaintext":  {"--token-file", filepath.Join(dir, "alice.token")},
		"unknown CA": {"--tls", "--token-file", filepath.Join(dir, "alice.token")},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := e.tether(append([]string{"connect", "--manager", e.mgrAddr()}, args...)...)
			if err == nil {
				t.Fatalf("connect succeeded:\n%s", out)
			}
			if strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Fatalf("error is not one line:\n%s", out)
			}
		})
	}
}

// writeCerts writes ca.pem, server.pem and server.key for ip into dir.
func writeCerts(t testing.TB, dir, ip string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tether test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "tether manager"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	caCert, _ := x509.ParseCertificate(caDER)
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	for name, block := range map[string]*pem.Block{
		"ca.pem":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.pem": {Type: "CERTIFICATE", Bytes: srvDER},
		"server.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

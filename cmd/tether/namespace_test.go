package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWorkloadNamespace: --namespace wins; else the kubeconfig's current
// context's namespace; else default. A broken kubeconfig is an error
// that says what to give instead.
func TestWorkloadNamespace(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://198.18.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts:
- {name: shop, context: {cluster: c, user: u, namespace: shop}}
- {name: plain, context: {cluster: c, user: u}}
current-context: %s
`
	for _, tc := range []struct {
		name, kubeconfig, flag, want, err string
	}{
		{"flag", write("shop", strings.Replace(kubeconfig, "%s", "shop", 1)), "dev", "dev", ""},
		{"current context's namespace", write("shop", strings.Replace(kubeconfig, "%s", "shop", 1)), "", "shop", ""},
		{"context without a namespace", write("plain", strings.Replace(kubeconfig, "%s", "plain", 1)), "", "default", ""},
		{"no kubeconfig", filepath.Join(dir, "missing"), "", "default", ""},
		{"broken kubeconfig", write("broken", "{not yaml"), "", "", "give --namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", tc.kubeconfig)
			t.Setenv("KUBERNETES_SERVICE_HOST", "")
			got, err := workloadNamespace(tc.flag)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("workloadNamespace = %q, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("workloadNamespace = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

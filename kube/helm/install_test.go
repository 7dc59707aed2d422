package helm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Helm's wait becomes one line when it begins and what is not ready, at
// most every progressEvery.
func TestProgress(t *testing.T) {
	var out, debug bytes.Buffer
	now := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	p := &progress{out: &out, namespace: "tether", timeout: time.Minute, now: func() time.Time { return now },
		debug: func(f string, a ...any) { debug.WriteString(f + "\n") }}
	p.log("creating %d resource(s)", 12)
	p.log("beginning wait for %d resources with timeout of %v", 12, time.Minute)
	for range 10 {
		p.log("Deployment is not ready: %s/%s. %d out of %d expected pods are ready", "tether", "traffic-manager", 0, 1)
		now = now.Add(time.Second)
	}
	p.log("beginning wait for %d resources to be deleted with timeout of %v", 12, time.Minute)
	want := `Waiting up to 1m0s for the traffic manager (deployment tether/traffic-manager) to become available...
  Deployment is not ready: tether/traffic-manager. 0 out of 1 expected pods are ready
  Deployment is not ready: tether/traffic-manager. 0 out of 1 expected pods are ready
Waiting up to 1m0s for the release's objects to be deleted...
`
	if out.String() != want {
		t.Fatalf("progress:\n%s\nwant:\n%s", out.String(), want)
	}
	if n := strings.Count(debug.String(), "\n"); n != 13 {
		t.Fatalf("%d debug lines, want every one of 13", n)
	}
}

// Without a reachable API server, install says so and changes nothing.
func TestInstallUnreachable(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: dev, user: {token: x}}]
contexts: [{name: lab, context: {cluster: lab, user: dev}}]
current-context: lab
`), 0o600); err != nil {
		t.Fatal(err)
	}
	kube := genericclioptions.NewConfigFlags(false)
	kube.KubeConfig = &kubeconfig
	var out bytes.Buffer
	err := Install(context.Background(), Options{Kube: kube, Out: &out, Progress: &out, Timeout: 5 * time.Second},
		map[string]any{"subnets": []any{"198.18.64.0/18"}})
	if err == nil || !strings.Contains(err.Error(), "cluster unreachable") {
		t.Fatalf("install against nothing: %v", err)
	}
	if out.Len() != 0 {
		t.Fatalf("said %q before failing", out.String())
	}
}

package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"helm.sh/helm/v3/pkg/cli/values"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/tether-dev/tether/kube/helm"
)

func TestHelmInstallDryRun(t *testing.T) {
	out, err := runTether(t, "helm", "install", "--dry-run", "-n", "tools", "--set", "subnets={198.18.64.0/18}", "--set", "intercept.inactiveBlockTimeout=5m")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: Deployment", "kind: ConfigMap", "name: traffic-manager", "namespace: tools", `intercept.inactiveBlockTimeout: "5m"`, "kind: ClusterRole"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	_, err = runTether(t, "helm", "install", "--dry-run", "--set", "subnets={198.18.64.0/18}", "--set", "grpc.connectionTTL=forever")
	if err == nil || !strings.Contains(err.Error(), "'/grpc/connectionTTL': 'forever' is not a positive duration") {
		t.Fatalf("a bad value: %v", err)
	}
}

// The chart's Deployment runs `tether manager` with flags it has and the
// variables of its configuration keys.
func TestHelmDeploymentMatchesTheManager(t *testing.T) {
	for name, sets := range map[string][]string{
		"defaults (auth.mode kubernetes, TLS)": {"subnets={198.18.64.0/18}"},
		"token file":                           {"subnets={198.18.64.0/18}", "auth.mode=tokenfile", "auth.tokenSecret=t", "grpc.insecureListenAny=true"},
	} {
		t.Run(name, func(t *testing.T) { checkDeploymentFlags(t, sets) })
	}
}

func checkDeploymentFlags(t *testing.T, sets []string) {
	vals, err := helm.Values(values.Options{Values: sets})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := helm.Render("tether", vals)
	if err != nil {
		t.Fatal(err)
	}
	var d *appsv1.Deployment
	for _, doc := range strings.Split(rel.Manifest, "\n---") {
		if strings.Contains(doc, "kind: Deployment") {
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			d = obj.(*appsv1.Deployment)
		}
	}
	if d == nil {
		t.Fatal("no Deployment")
	}
	// The command's own flags (--metrics-addr, --config) beside its keys'.
	f := newManagerCmd(&globals{}).Flags()
	keys := managerFlags(pflag.NewFlagSet("manager", pflag.ContinueOnError))
	c := d.Spec.Template.Spec.Containers[0]
	if c.Args[0] != "manager" {
		t.Fatalf("args %q", c.Args)
	}
	for _, a := range c.Args[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if f.Lookup(name) == nil {
			t.Errorf("tether manager has no flag --%s", name)
		}
	}
	envKeys := map[string]bool{}
	for k := range keys {
		envKeys[envName(k)] = true
	}
	for _, e := range c.Env {
		if !envKeys[e.Name] {
			t.Errorf("%s is not a manager configuration key's variable", e.Name)
		}
	}
}

package wire

import "testing"

func TestInDomains(t *testing.T) {
	domains := []string{"cluster.local", "Example.TEST."}
	for name, want := range map[string]bool{
		"cluster.local":                  true,
		"web.default.svc.cluster.local.": true,
		"WEB.Default.SVC.Cluster.Local":  true,
		"a.example.test":                 true,
		"notcluster.local":               false,
		"cluster.local.evil":             false,
		"example.com":                    false,
		"":                               false,
	} {
		if got := InDomains(name, domains); got != want {
			t.Errorf("InDomains(%q) = %v, want %v", name, got, want)
		}
	}
}

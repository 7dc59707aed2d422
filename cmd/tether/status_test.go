package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	pb "github.com/tether-dev/tether/rpc/daemon"
)

// The subnets in force, the refused ones and the search domains are in
// both forms of `tether status`.
func TestStatusShowsSubnetsAndSearch(t *testing.T) {
	resp := &pb.StatusResponse{Connected: true, Device: "tether0", Subnets: []string{"198.18.128.0/24"},
		RefusedSubnets: []string{"the traffic manager advertised 10.0.0.0/7, wider than /8 (routes.minPrefixLength)"},
		Dns:            "198.18.128.254:53", DnsDomains: []string{"cluster.local"}, Namespace: "shop",
		DnsSearch: []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"}}
	var out bytes.Buffer
	printStatus(&out, resp)
	for _, want := range []string{"Subnets:  198.18.128.0/24 via tether0", "Refused:  the traffic manager advertised 10.0.0.0/7",
		"Search:   shop.svc.cluster.local, svc.cluster.local, cluster.local"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
	b, err := json.Marshal(toStatusJSON(resp))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"refused_subnets":["the traffic manager advertised 10.0.0.0/7`, `"namespace":"shop"`, `"dns_search":["shop.svc.cluster.local",`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("status --json lacks %s:\n%s", want, b)
		}
	}
	if b, _ := json.Marshal(toStatusJSON(&pb.StatusResponse{})); !strings.Contains(string(b), `"refused_subnets":[]`) {
		t.Errorf("refused_subnets is not [] when none: %s", b)
	}
}

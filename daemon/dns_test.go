package daemon

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	pbm "github.com/tether-dev/tether/rpc/manager"
)

func TestDefaultDNSAddress(t *testing.T) {
	for _, tc := range []struct {
		subnets []string
		want    string
	}{
		{[]string{"198.18.2.0/24"}, "198.18.2.254:53"},
		{[]string{"2001:db8::/64", "10.96.0.0/12"}, "10.111.255.254:53"},
		{[]string{"198.18.2.4/31"}, ""},
		{[]string{"2001:db8::/64"}, ""},
	} {
		var ps []netip.Prefix
		for _, s := range tc.subnets {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		got, ok := defaultDNSAddress(ps)
		if (tc.want == "") == ok || (ok && got.String() != tc.want) {
			t.Errorf("%v: %v %v, want %q", tc.subnets, got, ok, tc.want)
		}
	}
}

func query(t *testing.T, name string, qt dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: qt, Class: dnsmessage.ClassINET})
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDNSAnswers(t *testing.T) {
	r := &dnsResolver{domains: []string{"cluster.local"}, resolve: func(_ context.Context, name string, family uint32) (*pbm.ResolveResponse, error) {
		switch name {
		case "web.default.svc.cluster.local.":
			if family == 4 {
				return &pbm.ResolveResponse{Addresses: []string{"198.18.2.7"}}, nil
			}
			return &pbm.ResolveResponse{Addresses: []string{"2001:db8::7"}}, nil
		case "down.cluster.local.":
			return nil, errors.New("manager gone")
		}
		return &pbm.ResolveResponse{NotFound: true}, nil
	}}
	for _, tc := range []struct {
		name  string
		qtype dnsmessage.Type
		rcode dnsmessage.RCode
		addrs int
	}{
		{"web.default.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, 1},
		{"WEB.default.svc.Cluster.Local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, 1},
		{"web.default.svc.cluster.local.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, 1},
		{"web.default.svc.cluster.local.", dnsmessage.TypeMX, dnsmessage.RCodeSuccess, 0},
		{"nope.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, 0},
		{"down.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeServerFailure, 0},
		{"example.com.", dnsmessage.TypeA, dnsmessage.RCodeRefused, 0},
		{"notcluster.local.", dnsmessage.TypeA, dnsmessage.RCodeRefused, 0},
	} {
		ans := r.answer(context.Background(), query(t, tc.name, tc.qtype))
		var p dnsmessage.Parser
		h, err := p.Start(ans)
		if err != nil {
			t.Fatalf("%s: unparsable answer: %v", tc.name, err)
		}
		p.SkipAllQuestions()
		rrs, _ := p.AllAnswers()
		if h.ID != 7 || !h.Response || h.RCode != tc.rcode || len(rrs) != tc.addrs {
			t.Errorf("%s %v: rcode %v with %d answers, want %v with %d", tc.name, tc.qtype, h.RCode, len(rrs), tc.rcode, tc.addrs)
		}
	}
	if r.answer(context.Background(), []byte{1, 2, 3}) != nil {
		t.Error("garbage got an answer")
	}
}

func FuzzDNSAnswer(f *testing.F) {
	r := &dnsResolver{domains: []string{"cluster.local"}, resolve: func(context.Context, string, uint32) (*pbm.ResolveResponse, error) {
		return &pbm.ResolveResponse{Addresses: []string{"198.18.2.7", "2001:db8::7", "junk"}}, nil
	}}
	f.Add([]byte{})
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("a.cluster.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	seed, _ := b.Finish()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, q []byte) {
		if ans := r.answer(context.Background(), q); ans != nil {
			var p dnsmessage.Parser
			if _, err := p.Start(ans); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
		}
	})
}

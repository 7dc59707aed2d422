package manager

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/manager"
)

func prefixes(ss ...string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestUnionPrefixes(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		configured, discover []netip.Prefix
		want                 []netip.Prefix
	}{
		{"discovered only", nil, prefixes("198.18.160.0/24", "198.18.128.0/24"), prefixes("198.18.128.0/24", "198.18.160.0/24")},
		{"configured are kept", prefixes("198.18.2.0/24"), prefixes("198.18.128.0/24"), prefixes("198.18.2.0/24", "198.18.128.0/24")},
		{"duplicates once", prefixes("198.18.2.0/24"), prefixes("198.18.2.0/24"), prefixes("198.18.2.0/24")},
		{"host bits masked", prefixes("198.18.2.7/24"), nil, prefixes("198.18.2.0/24")},
		{"a covered prefix goes", prefixes("198.18.0.0/16"), prefixes("198.18.128.0/24", "198.19.0.0/24"), prefixes("198.18.0.0/16", "198.19.0.0/24")},
		{"covered by a discovered one", prefixes("198.18.2.0/24"), prefixes("198.18.0.0/20"), prefixes("198.18.0.0/20")},
		{"IPv4 before IPv6", prefixes("fd00:10::/64"), prefixes("198.18.2.0/24"), prefixes("198.18.2.0/24", "fd00:10::/64")},
		{"nothing", nil, nil, prefixes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unionPrefixes(tc.configured, tc.discover); !slices.Equal(got, tc.want) {
				t.Fatalf("union = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewNeedsSubnetsOrDiscovery(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	if _, err := New(Config{Log: log}); err == nil || !strings.Contains(err.Error(), "kube.discoverSubnets") {
		t.Fatalf("no subnets, no discovery: %v", err)
	}
	s, err := New(Config{Log: log, DiscoverSubnets: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
}

// TestSetSubnetsReachesWatchers: discovered subnets join the configured
// ones, reach a connected daemon's watch stream as they change, and decide
// which flows the manager dials; a discovery that drops everything leaves
// the configured subnets.
func TestSetSubnetsReachesWatchers(t *testing.T) {
	m := startGRPC(t, Config{Subnets: prefixes("198.18.2.0/24"), DiscoverSubnets: true})
	alice := m.arrive(t, "alice")
	ctx, cancel := context.WithTimeout(alice, 10*time.Second)
	defer cancel()
	stream, err := m.client.WatchSession(ctx, &pb.WatchSessionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	next := func(want ...string) {
		t.Helper()
		for {
			ev, err := stream.Recv()
			if err != nil {
				t.Fatalf("watch: %v", err)
			}
			if !ev.SubnetsChanged {
				continue
			}
			if !slices.Equal(ev.Subnets, want) {
				t.Fatalf("subnets event %v, want %v", ev.Subnets, want)
			}
			return
		}
	}
	next("198.18.2.0/24") // the first event
	m.s.SetSubnets(prefixes("198.18.160.0/24", "198.18.128.0/24"))
	next("198.18.2.0/24", "198.18.128.0/24", "198.18.160.0/24")
	if !m.s.allowed(netip.MustParseAddr("198.18.160.9")) {
		t.Fatal("a flow into a discovered subnet is refused")
	}
	// The same set again is no change: the next event is the next change.
	m.s.SetSubnets(prefixes("198.18.128.0/24", "198.18.160.0/24"))
	m.s.SetSubnets(prefixes("198.18.128.0/24"))
	next("198.18.2.0/24", "198.18.128.0/24")
	if m.s.allowed(netip.MustParseAddr("198.18.160.9")) {
		t.Fatal("a flow into a removed subnet is allowed")
	}
	m.s.SetSubnets(nil)
	next("198.18.2.0/24")
	if !m.s.allowed(netip.MustParseAddr("198.18.2.9")) {
		t.Fatal("the configured subnet went with the discovered ones")
	}
	resp, err := m.client.Arrive(context.Background(), &pb.ArriveRequest{User: "bob", Host: "b", DaemonInstance: "d-bob"})
	if err != nil || !slices.Equal(resp.Subnets, []string{"198.18.2.0/24"}) {
		t.Fatalf("Arrive after the changes: %v, %v", resp.GetSubnets(), err)
	}
}

// TestArriveSearchDomains: a session's namespace makes the search domains
// of a pod in it, before dns.search; a name that is no namespace is refused.
func TestArriveSearchDomains(t *testing.T) {
	m := startGRPC(t, Config{DNSSearch: []string{"corp.example", "svc.cluster.local."}})
	for _, tc := range []struct {
		name, namespace, domain string
		want                    []string
		code                    codes.Code
	}{
		{name: "no namespace", want: []string{"svc.cluster.local", "cluster.local", "corp.example"}},
		{name: "namespace", namespace: "shop", want: []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"}},
		{name: "not a namespace", namespace: "Shop.evil", code: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := m.client.Arrive(context.Background(), &pb.ArriveRequest{User: "alice", Host: "a", DaemonInstance: "d", Namespace: tc.namespace})
			if status.Code(err) != tc.code {
				t.Fatalf("Arrive: %v, want code %v", err, tc.code)
			}
			if err == nil && !slices.Equal(resp.DnsSearch, tc.want) {
				t.Fatalf("search domains %v, want %v", resp.DnsSearch, tc.want)
			}
		})
	}
	other := startGRPC(t, Config{ClusterDomain: "k.example."})
	resp, err := other.client.Arrive(context.Background(), &pb.ArriveRequest{User: "alice", Host: "a", DaemonInstance: "d", Namespace: "shop"})
	if err != nil || !slices.Equal(resp.DnsSearch, []string{"shop.svc.k.example", "svc.k.example", "k.example"}) {
		t.Fatalf("dns.clusterDomain k.example: %v, %v", resp.GetDnsSearch(), err)
	}
}

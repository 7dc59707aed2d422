package manager

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// DefaultDNSDomains are resolved through the manager unless configured.
var DefaultDNSDomains = []string{"cluster.local"}

// DefaultClusterDomain is the cluster's DNS domain unless configured
// (dns.clusterDomain), as kubelet's --cluster-domain defaults it.
const DefaultClusterDomain = "cluster.local"

// searchDomains are the search domains of a session in namespace: those
// of the cluster's pods in it (NS.svc.DOMAIN, svc.DOMAIN, DOMAIN, as
// kubelet writes them into a pod's resolv.conf), so "web" and "web.shop"
// resolve as they do in a pod, then dns.search. Without a namespace only
// svc.DOMAIN and DOMAIN: "web.shop" resolves, "web" needs --namespace.
func (s *Server) searchDomains(namespace string) []string {
	var out []string
	if namespace != "" {
		out = append(out, namespace+".svc."+s.clusterDomain)
	}
	out = append(out, "svc."+s.clusterDomain, s.clusterDomain)
	for _, d := range s.dnsSearch {
		if d = strings.Trim(d, "."); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// isDNSLabel reports whether s is an RFC 1123 label, as a namespace name
// is: it becomes part of a search domain.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// resolveTimeout bounds one lookup.
const resolveTimeout = 3 * time.Second

// newResolver returns the manager's resolver: the system's, or one that
// asks server (host:port) when set.
func newResolver(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, server)
	}}
}

// Resolve implements pb.ManagerServer. Only names in the DNS domains are
// looked up: the manager is not an open resolver.
func (s *Server) Resolve(ctx context.Context, req *pb.ResolveRequest) (*pb.ResolveResponse, error) {
	if _, err := s.authenticate(ctx); err != nil {
		return nil, err
	}
	if !wire.InDomains(req.Name, s.dnsDomains) {
		return nil, status.Errorf(codes.PermissionDenied, "%s is outside the cluster DNS domains %v", req.Name, s.dnsDomains)
	}
	network := "ip4"
	if req.Family == 6 {
		network = "ip6"
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := s.resolver.LookupNetIP(ctx, network, strings.TrimSuffix(req.Name, "."))
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		// Go's resolver reports a missing name and a missing record
		// type alike; both become NXDOMAIN.
		return &pb.ResolveResponse{NotFound: true}, nil
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "resolve %s: %v", req.Name, err)
	}
	resp := &pb.ResolveResponse{}
	for _, a := range addrs {
		resp.Addresses = append(resp.Addresses, a.Unmap().String())
	}
	return resp, nil
}

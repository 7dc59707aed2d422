package manager

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// DefaultDNSDomains are resolved through the manager unless configured.
var DefaultDNSDomains = []string{"cluster.local"}

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

//go:build !linux && !darwin

package platform

import (
	"fmt"
	"log/slog"
	"net/netip"
)

// CleanStaleDNS has nothing to clean here.
func CleanStaleDNS(dev string) ([]string, error) { return nil, nil }

// ConfigureDNS changes nothing here; note says how to use the server.
func ConfigureDNS(dev string, server netip.Addr, domains, search []string, log *slog.Logger) (undo func() error, note string, err error) {
	return func() error { return nil }, fmt.Sprintf("the host's DNS is not configured on this system: query %s for %v", server, domains), nil
}

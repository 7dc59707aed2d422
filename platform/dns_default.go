//go:build !linux && !darwin

package platform

import (
	"fmt"
	"log/slog"
	"net/netip"
)

// ConfigureDNS changes nothing here; note says how to use the server.
func ConfigureDNS(dev string, server netip.Addr, domains []string, log *slog.Logger) (undo func() error, note string, err error) {
	return func() error { return nil }, fmt.Sprintf("the host's DNS is not configured on this system: query %s for %v", server, domains), nil
}

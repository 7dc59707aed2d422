package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
)

// ConfigureDNS writes /etc/resolver/DOMAIN for each domain, so macOS asks
// server for those names; undo removes the files.
func ConfigureDNS(dev string, server netip.Addr, domains []string, log *slog.Logger) (undo func() error, note string, err error) {
	if err := os.MkdirAll("/etc/resolver", 0o755); err != nil {
		return nil, "", err
	}
	var written []string
	undo = func() error {
		var errs []error
		for _, f := range written {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	for _, d := range domains {
		f := filepath.Join("/etc/resolver", d)
		if err := os.WriteFile(f, []byte(fmt.Sprintf("# written by tether for %s\nnameserver %s\n", dev, server)), 0o644); err != nil {
			undo()
			return nil, "", err
		}
		written = append(written, f)
	}
	log.Info("DNS configured in /etc/resolver", "component", "dns", "server", server, "domains", domains)
	return undo, "/etc/resolver", nil
}

package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// resolverMarker starts every file tether writes into /etc/resolver.
const resolverMarker = "# written by tether for"

// CleanStaleDNS removes the /etc/resolver files a dead daemon left for
// device dev: those that start with our marker and name dev.
func CleanStaleDNS(dev string) ([]string, error) {
	entries, err := os.ReadDir("/etc/resolver")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		f := filepath.Join("/etc/resolver", e.Name())
		b, err := os.ReadFile(f)
		if err != nil || !strings.HasPrefix(string(b), resolverMarker+" "+dev+"\n") {
			continue
		}
		if err := os.Remove(f); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, f)
	}
	return removed, errors.Join(errs...)
}

// ConfigureDNS writes /etc/resolver/DOMAIN for each domain, so macOS asks
// server for those names; undo removes the files.
func ConfigureDNS(dev string, server netip.Addr, domains, search []string, log *slog.Logger) (undo func() error, note string, err error) {
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
		content := fmt.Sprintf("%s %s\nnameserver %s\n", resolverMarker, dev, server)
		if len(search) > 0 {
			content += "search " + strings.Join(search, " ") + "\n"
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			undo()
			return nil, "", err
		}
		written = append(written, f)
	}
	log.Info("DNS configured in /etc/resolver", "component", "dns", "server", server, "domains", domains)
	return undo, "/etc/resolver", nil
}

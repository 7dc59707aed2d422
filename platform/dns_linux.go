package platform

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
)

// CleanStaleDNS removes DNS settings a dead daemon left. systemd-resolved's
// per-link settings die with the TUN, so there is nothing to do here.
func CleanStaleDNS(dev string) ([]string, error) { return nil, nil }

// ConfigureDNS makes the host resolve domains at server through dev: with
// systemd-resolved, as per-link DNS and routing domains of dev (undone with
// `resolvectl revert`, and gone with the link if the daemon dies). Without
// it, nothing changes and note says how to use the server.
func ConfigureDNS(dev string, server netip.Addr, domains, search []string, log *slog.Logger) (undo func() error, note string, err error) {
	noop := func() error { return nil }
	if _, err := exec.LookPath("resolvectl"); err != nil || exec.Command("resolvectl", "status", dev).Run() != nil {
		return noop, fmt.Sprintf("systemd-resolved is not running: query %s directly (dig @%s) or make it your resolver for %v", server, server, domains), nil
	}
	if out, err := exec.Command("resolvectl", "dns", dev, server.String()).CombinedOutput(); err != nil {
		return noop, "", fmt.Errorf("resolvectl dns %s %s: %v: %s", dev, server, err, out)
	}
	args := []string{"domain", dev}
	for _, d := range domains {
		args = append(args, "~"+d) // routing-only: these names go to dev, others do not
	}
	args = append(args, search...) // search domains, for short names
	if out, err := exec.Command("resolvectl", args...).CombinedOutput(); err != nil {
		exec.Command("resolvectl", "revert", dev).Run()
		return noop, "", fmt.Errorf("resolvectl domain: %v: %s", err, out)
	}
	log.Info("DNS configured in systemd-resolved", "component", "dns", "device", dev, "server", server, "domains", domains)
	return func() error {
		if out, err := exec.Command("resolvectl", "revert", dev).CombinedOutput(); err != nil {
			return fmt.Errorf("resolvectl revert %s: %v: %s", dev, err, out)
		}
		return nil
	}, "systemd-resolved", nil
}

package platform

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
)

// NewRouter returns a Router for the adapter named dev, which netsh
// configures. The adapter need not exist yet.
func NewRouter(dev string, log *slog.Logger) (Router, error) {
	return newRouter(&netshOps{dev: dev}, dev, log), nil
}

// netshOps are the routeOps of Windows. router's mutex serialises all calls.
type netshOps struct {
	dev string
}

// up does nothing: a Wintun adapter is up for as long as its session is
// open, and there is no admin state to change.
func (o *netshOps) up() error { return nil }

func (o *netshOps) add(p netip.Prefix) error {
	// store=active: netsh otherwise writes the route to the registry, and a
	// daemon that was killed would leave it behind across reboots.
	if err := run("netsh", "interface", family(p), "add", "route", p.String(), o.dev, "store=active"); err != nil {
		return fmt.Errorf("add route %s dev %s: %w", p, o.dev, err)
	}
	return nil
}

func (o *netshOps) del(p netip.Prefix) error {
	// The adapter may be gone already, taking its routes with it.
	if _, err := net.InterfaceByName(o.dev); err != nil {
		return nil
	}
	if err := run("netsh", "interface", family(p), "delete", "route", p.String(), o.dev, "store=active"); err != nil {
		return fmt.Errorf("delete route %s dev %s: %w", p, o.dev, err)
	}
	return nil
}

func (o *netshOps) close() error { return nil }

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// run runs a command and puts what it printed into the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// RemoveStale deletes a network device named dev if it exists (left behind by a daemon that was killed) together with routes through it. Returns (true, nil) when it removed something.
//
// On Windows there is never anything to remove: Windows removes a Wintun
// adapter, and its routes with it, when the process that created it exits,
// and the routes were added with store=active so none outlive a reboot.
func RemoveStale(dev string) (bool, error) {
	return false, nil
}

package platform

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
)

// NewRouter returns a Router for device dev, which route(8) and ifconfig(8)
// configure. The device need not exist yet: it is brought up on every Set.
func NewRouter(dev string, log *slog.Logger) (Router, error) {
	return newRouter(&routeCmdOps{dev: dev}, dev, log), nil
}

// routeCmdOps are the routeOps of macOS. router's mutex serialises all calls.
type routeCmdOps struct {
	dev string
}

func (o *routeCmdOps) up() error {
	if err := run("/sbin/ifconfig", o.dev, "up"); err != nil {
		return fmt.Errorf("set routes: bring device %s up: %w", o.dev, err)
	}
	return nil
}

func (o *routeCmdOps) add(p netip.Prefix) error {
	if err := run("/sbin/route", "-q", "-n", "add", family(p), "-net", p.String(), "-interface", o.dev); err != nil {
		return fmt.Errorf("add route %s dev %s: %w", p, o.dev, err)
	}
	return nil
}

func (o *routeCmdOps) del(p netip.Prefix) error {
	// A utun device vanishes with the process that opened it, and its routes
	// with it; route(8) would then fail, and -q hides why.
	if _, err := net.InterfaceByName(o.dev); err != nil {
		return nil
	}
	if err := run("/sbin/route", "-q", "-n", "delete", family(p), "-net", p.String(), "-interface", o.dev); err != nil {
		return fmt.Errorf("delete route %s dev %s: %w", p, o.dev, err)
	}
	return nil
}

func (o *routeCmdOps) close() error { return nil }

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "-inet"
	}
	return "-inet6"
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
// On macOS there is never anything to remove: a utun device and its routes
// vanish with the process that opened it.
func RemoveStale(dev string) (bool, error) {
	return false, nil
}

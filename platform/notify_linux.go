package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Notifier tells the service manager that started the daemon how it is
// doing. On Linux that is systemd's notify protocol (sd_notify(3)): one
// datagram per message to $NOTIFY_SOCKET. Outside systemd every method does
// nothing.
//
// NewNotifier → Ready → Stopping → Close. When systemd watches the daemon
// ($WATCHDOG_USEC), a goroutine sends WATCHDOG=1 at half that interval until
// Close.
type Notifier struct {
	log      *slog.Logger
	addr     string        // $NOTIFY_SOCKET: a path, or "@name" for an abstract socket; "" outside systemd
	interval time.Duration // between two WATCHDOG=1; 0 when systemd watches nothing

	closeOnce sync.Once
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the watchdog goroutine ends; nil without one
}

// NewNotifier returns the Notifier of this process, started when systemd
// watches it. stop is not used on Linux: systemd stops the daemon with
// SIGTERM.
func NewNotifier(log *slog.Logger, stop func()) *Notifier {
	return newNotifier(os.Getenv, os.Getpid(), log)
}

func newNotifier(getenv func(string) string, pid int, log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{log: log.With("component", "notify"), stop: make(chan struct{})}
	addr := getenv("NOTIFY_SOCKET")
	switch {
	case addr == "":
		return n
	case !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@"):
		// Such as systemd's vsock: addresses for virtual machines.
		n.log.Warn("NOTIFY_SOCKET is neither a path nor an abstract socket; not notifying systemd", "notify_socket", addr)
		return n
	}
	n.addr = addr
	interval, err := watchdogInterval(getenv("WATCHDOG_USEC"), getenv("WATCHDOG_PID"), pid)
	if err != nil {
		n.log.Warn("systemd's watchdog is set up wrong; not sending WATCHDOG=1", "error", err)
	}
	if interval > 0 {
		n.interval = interval
		n.done = make(chan struct{})
		go n.watchdog()
	}
	return n
}

// watchdogInterval returns how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC when it is set and $WATCHDOG_PID is unset or names this
// process (sd_watchdog_enabled(3)); 0 when systemd watches nothing.
func watchdogInterval(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil {
			return 0, fmt.Errorf("WATCHDOG_PID=%q is not a process id", pid)
		}
		if p != self {
			return 0, nil // meant for another process, such as our parent
		}
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC=%q is not a positive number of microseconds", usec)
	}
	return time.Duration(u) * time.Microsecond / 2, nil
}

// Ready tells systemd that the daemon serves (READY=1): Type=notify
// services count as started from then on.
func (n *Notifier) Ready() error { return n.send("READY=1") }

// Stopping tells systemd that the daemon is shutting down (STOPPING=1).
func (n *Notifier) Stopping() error { return n.send("STOPPING=1") }

// Close stops the watchdog goroutine and waits for it. Idempotent.
func (n *Notifier) Close() error {
	n.closeOnce.Do(func() { close(n.stop) })
	if n.done != nil {
		<-n.done
	}
	return nil
}

func (n *Notifier) watchdog() {
	defer close(n.done)
	n.log.Info("systemd watchdog started", "interval", n.interval)
	defer n.log.Info("systemd watchdog stopped")
	t := time.NewTicker(n.interval)
	defer t.Stop()
	for {
		if err := n.send("WATCHDOG=1"); err != nil {
			n.log.Warn("watchdog ping failed; systemd will restart the daemon if this goes on", "error", err)
		}
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// send sends one datagram to $NOTIFY_SOCKET, on a socket of its own as
// sd_notify(3) does: nothing to keep open between the rare messages, and
// nothing to go stale when systemd re-executes itself. Go's net package
// maps a leading "@" to Linux's abstract namespace.
func (n *Notifier) send(state string) error {
	if n.addr == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd %s: %w", state, err)
	}
	_, werr := c.Write([]byte(state))
	if err := errors.Join(werr, c.Close()); err != nil {
		return fmt.Errorf("notify systemd %s: %w", state, err)
	}
	return nil
}

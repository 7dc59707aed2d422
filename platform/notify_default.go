//go:build !linux && !windows

package platform

import "log/slog"

// Notifier tells the service manager that started the daemon how it is
// doing. Here (launchd included, which has no readiness protocol) there is
// nothing to tell: every method does nothing.
type Notifier struct{}

// NewNotifier returns the Notifier of this process. stop is not used here:
// launchd stops the daemon with SIGTERM.
func NewNotifier(log *slog.Logger, stop func()) *Notifier { return &Notifier{} }

// Ready tells the service manager that the daemon serves.
func (n *Notifier) Ready() error { return nil }

// Stopping tells the service manager that the daemon is shutting down.
func (n *Notifier) Stopping() error { return nil }

// Close releases the Notifier. Idempotent.
func (n *Notifier) Close() error { return nil }

// Package activity decides whether a person is using a session, and keeps
// the manager informed. It uses the standard library only.
//
// What counts (Counts): a new outbound TCP tunnel (once per flow, at the
// moment the daemon asks the manager to dial, refused or not, except to
// ports in IgnoreTCPPorts) and a CLI command that reaches the daemon without
// --no-activity. Nothing else does: UDP and DNS, ICMP, bytes on existing
// connections, inbound flows an intercepted pod starts, and the daemon's own
// traffic.
//
// The Tracker counts activity events and remembers when the last one was,
// on a Clock that keeps counting while the machine is suspended (the daemon
// passes internal/clock.Boot: Go's monotonic clock stops in suspend, and a
// night's sleep would look like seconds). The manager never sees a
// wall-clock time from the client, only "idle for D" and the counter (see
// Ledger for the manager's rule, and its UNKNOWN state after a restart).
package activity

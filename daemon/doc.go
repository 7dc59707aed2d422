// Package daemon is the root daemon: it serves the control API to the
// tether CLI on a unix socket and owns at most one session with a traffic
// manager. It is the one package that wires vif, tunnel and platform
// together.
//
// Session states, as `tether status` shows them:
//
//	not connected ──Connect──▶ connected (link ready) ◀──▶ connected (link reconnecting)
//	      ▲                          │
//	      └──────Quit, daemon stop───┘
//
// While the link to the manager is down, new flows are reset at once and the
// gRPC connection retries with exponential backoff and jitter (at most
// tunnel.MaxBackoff apart). When it is back the daemon calls Arrive again with the
// session's credentials: the manager resumes the session if it still knows
// it and opens a new one otherwise (a restarted manager).
package daemon

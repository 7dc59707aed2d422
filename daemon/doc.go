// Package daemon is the root daemon: it serves the control API to the
// tether CLI on a unix socket and owns at most one session with a traffic
// manager. It is the one package that wires vif, tunnel and platform
// together.
//
// Session states, as `tether status` shows them:
//
//	                  ┌──Connect──▶ connecting ──┐
//	not connected ────┤                          ├──▶ connected (link ready) ◀──▶ connected (link reconnecting)
//	      ▲    ▲      └─start, cache─▶ resuming ─┘            │
//	      │    └── Quit, refusal ──────┘ (retries while unreachable)
//	      └───────────────────────── Quit, daemon stop ───────┘
//
// Connecting and resuming hold only Daemon.connMu: status and the other
// control calls answer meanwhile, and Quit cancels them.
//
// While the link to the manager is down, new flows are reset at once and the
// gRPC connection retries with exponential backoff and jitter (at most
// tunnel.MaxBackoff apart). When it is back the daemon calls Arrive again with the
// session's credentials: the manager resumes the session if it still knows
// it and opens a new one otherwise (a restarted manager).
package daemon

// Package agent is the pod-side forwarder. It runs beside a workload in the
// pod's network, listens on the workload's port and sends each connection,
// or for HTTP each request, either to the app or, when an intercept claims
// it, through the traffic manager to the intercepting developer.
//
// # Routes
//
// The manager's WatchAgent stream gives the intercepts that receive the
// workload's traffic; each message replaces the whole table, which the agent
// swaps atomically. While the stream is down everything goes to the app and
// the agent reconnects with backoff and jitter (at most 5 s).
//
// # Decisions
//
//	accept ─┬─ GLOBAL intercept of the port, or REPLACE ──► one AgentTunnel flow
//	        │                                               (open fails: the app)
//	        ├─ HTTP intercepts of the port ── peek ≤ 500 ms ─┬─ HTTP/1.x or h2c ──► net/http,
//	        │                                               │                      per request
//	        │                                               └─ other, silence ──► the app
//	        └─ none ──► the app (no peek: server-first protocols wait for nothing)
//
// Per request the table is read afresh: the first intercept whose filter
// matches (a whole-traffic intercept matches everything) gets the request,
// otherwise the app. A connection accepted while no intercept existed stays
// with the app until it closes.
//
// A flow the manager does not open (refused, timed out after 5 s, manager
// unreachable) has carried no byte, so its connection or request goes to the
// app instead, and the intercept gets nothing for a short cool-down, so that
// later requests do not wait for it again.
//
// # Lifecycle
//
// New listens and prepares the gRPC client; Run serves until its context
// ends, then closes the listener, ends every connection and flow and waits
// for its goroutines; Close releases what New opened (idempotent, also
// after Run).
package agent

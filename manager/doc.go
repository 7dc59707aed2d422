// Package manager is the traffic manager: it holds the daemons' sessions and
// dials into the cluster network for their flows. It never imports vif,
// platform or daemon.
//
// Lifecycle: New, Register on a grpc.Server, Shutdown. Shutdown ends every
// flow with status Unavailable so that daemons reset their local
// connections at once instead of waiting for a timeout.
package manager

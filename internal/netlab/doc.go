// Package netlab builds a network-namespace lab for Tether's root end-to-end tests, benchmarks
// and demo. It is the Go counterpart of a small shell lab: three (or more) namespaces joined by
// veth pairs, using only addresses from the benchmark range 198.18.0.0/15.
//
//	Client (laptop)            Mgr (traffic-manager host)        Pod (cluster pod network)
//	┌─────────────────┐        ┌──────────────────────────┐      ┌────────────────────┐
//	│cl0 198.18.1.1/24├────────┤mg0 198.18.1.2/24         │      │                    │
//	└─────────────────┘        │          mg1 198.18.2.1/24├──────┤pd0 198.18.2.2/24   │
//	                           │ ip_forward=0              │      └────────────────────┘
//	                           └──────────────────────────┘
//
// With Options.ExtraClients > 0 the client side is a bridge instead: br0 in Mgr holds
// 198.18.1.2/24 and every client namespace (198.18.1.1, .3, .4, ...) has a veth cl0 whose peer
// (mgc0, mgc1, ...) is a port of br0.
//
// Routing rules:
//   - client namespaces have only their connected route 198.18.1.0/24, so they reach the pod
//     network 198.18.2.0/24 only through the software under test (a TUN in the client);
//   - Mgr reaches Pod over its connected route and forwards nothing (net.ipv4.ip_forward is set
//     to 0 explicitly: a new namespace inherits the host's value);
//   - Pod has only its connected route;
//   - Client(s) and Mgr get net.ipv4.tcp_tw_reuse=1 for connection-rate loops;
//   - [Lab.KernelRoute] adds a kernel-routed path client -> mgr -> pod for a baseline benchmark.
//
// The host's own namespace is never changed beyond creating and deleting the named namespaces:
// veth pairs are created directly inside them. Namespace names carry a random suffix, so labs
// of packages tested in parallel do not collide.
//
// # Lifecycle
//
// [New] builds the lab (and removes what it built if it fails); [Lab.Close] kills the
// processes started through [Lab.Start] (SIGTERM to each process group, SIGKILL after 3s) and
// deletes the namespaces. Close is idempotent and safe to call concurrently with anything else
// on the Lab; after Close, Start fails. Processes built with [Lab.Command] belong to the
// caller. Sockets created with [Lab.Listen], [Lab.ListenPacket] and [Lab.DialContext] belong
// to the caller too; they keep their namespace alive until closed even after Close removed
// its name.
//
// The Serve* functions in servers.go run in-process test servers on such sockets; each
// returns a stop function that closes the socket and waits for every goroutine it started.
//
// All of this needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2 and /dev/net/tun; tests
// call [Available] and skip when it returns an error.
package netlab

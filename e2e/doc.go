// Package e2e holds Tether's end-to-end tests and benchmarks: real tether
// processes (manager, daemon, CLI) and real programs (curl, nc, dig,
// iperf3) in network namespaces that each run builds and removes. They need
// root and /dev/net/tun and skip, saying so, without them.
package e2e

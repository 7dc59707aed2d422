// Package platform holds what the Tether root daemon does differently on each
// operating system: routing cluster subnets into the TUN device, spotting
// subnets that clash with the host's own networks, and clearing up a device
// left behind by a daemon that was killed.
//
// OS code lives only in files named _linux.go, _darwin.go and _windows.go;
// router_default.go covers every other GOOS so the package still builds
// there. Each ability has a fake beside it (fake.go) for the tests of other
// packages.
//
// # Router lifecycle
//
//	NewRouter ──▶ Set ⇄ Set ──▶ Close (idempotent)
//
// A Router is safe for concurrent use. It removes only routes it added
// itself, so a route the user or another program put through the same device
// is left alone.
package platform

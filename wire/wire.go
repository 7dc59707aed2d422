// Package wire is what the daemon, the agent, the manager and the CLI must
// agree on beyond the .proto files: the protocol version and the rule that
// decides whether two sides can work together (this file), the gRPC
// metadata keys (metadata.go) and which names go to the cluster's DNS
// (dns.go). It imports nothing of
// Tether, so every side can import it without dragging in another's
// dependencies (STYLE.md, "The wire contract has its own package").
package wire

import "fmt"

// Protocol is the version of the contract this build speaks. Raise it
// when a change needs both sides to know of it (a new required field, a
// changed meaning); fields that old peers may ignore need no new version.
const Protocol = 1

// MinProtocol is the oldest peer protocol this build still works with.
// Raising it drops support for older peers.
const MinProtocol = 1

// Side is one end of a link as the compatibility rule sees it.
type Side struct {
	// Name is how a person calls it: "the traffic manager", "the daemon
	// on /run/tether/daemon.sock", "this tether".
	Name string
	// Upgrade says how to upgrade it, when it is the side to upgrade.
	Upgrade string
	// Protocol and MinProtocol as the side reports them; 0 (a build from
	// before protocol versions) counts as 1.
	Protocol, MinProtocol uint32
}

// Local is this build as side name, with the given upgrade hint.
func Local(name, upgrade string) Side {
	return Side{Name: name, Upgrade: upgrade, Protocol: Protocol, MinProtocol: MinProtocol}
}

func (s Side) normal() Side {
	if s.Protocol == 0 {
		s.Protocol = 1
	}
	if s.MinProtocol == 0 || s.MinProtocol > s.Protocol {
		s.MinProtocol = s.Protocol
	}
	return s
}

// IncompatibleError says that two sides cannot work together and which one
// to upgrade.
type IncompatibleError struct {
	Old, New Side // Old is the side to upgrade
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("%s speaks protocol %d, but %s needs at least protocol %d: %s",
		e.Old.Name, e.Old.Protocol, e.New.Name, e.New.MinProtocol, e.Old.Upgrade)
}

// Check decides whether local and peer work together. It returns an
// *IncompatibleError when they do not; when they do but speak different
// protocols, a note that names both and the older side's upgrade; and ""
// when they speak the same protocol.
func Check(local, peer Side) (note string, err error) {
	local, peer = local.normal(), peer.normal()
	switch {
	case peer.Protocol < local.MinProtocol:
		return "", &IncompatibleError{Old: peer, New: local}
	case local.Protocol < peer.MinProtocol:
		return "", &IncompatibleError{Old: local, New: peer}
	case peer.Protocol == local.Protocol:
		return "", nil
	}
	older, newer := peer, local
	if local.Protocol < peer.Protocol {
		older, newer = local, peer
	}
	return fmt.Sprintf("%s speaks protocol %d, %s protocol %d; they still work together, but %s",
		older.Name, older.Protocol, newer.Name, newer.Protocol, older.Upgrade), nil
}

// Names and upgrade hints of the sides, the same wherever a refusal is
// made.
const (
	ManagerName    = "the traffic manager"
	UpgradeManager = "upgrade the traffic manager"
	DaemonName     = "the tether daemon"
	UpgradeDaemon  = "upgrade tether on this laptop and restart its daemon (`sudo tether quit --stop-daemon`, then `sudo tether connect`)"
	UpgradeAgent   = "upgrade the agent beside the workload"
	CLIName        = "this tether command"
	UpgradeCLI     = "upgrade the tether command to the daemon's version"
)

// Package buildinfo describes the running binary: its module version and
// the VCS state it was built from (debug.ReadBuildInfo), and the wire
// protocol it speaks.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"

	pbm "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// Release is the release this source tree makes: the chart's appVersion
// and so the default image tag (a module version is "(devel)" in a work
// tree, which no image is tagged with).
const Release = "0.1.0"

// Info is what `tether version` shows of one binary.
type Info struct {
	// Version is the module version: "v1.2.3" for a release built with go
	// install, "(devel)" for a build from a work tree.
	Version string `json:"version"`
	// Revision, Time and Modified are the VCS commit, its time and whether
	// the work tree had changes; empty when the build did not record them
	// (go run, -buildvcs=false).
	Revision string `json:"revision"`
	Time     string `json:"time"`
	Modified bool   `json:"modified"`
	// GoVersion is the toolchain that built it.
	GoVersion string `json:"go_version"`
	// Protocol and MinProtocol: the wire protocol it speaks and the
	// oldest it still works with.
	Protocol    uint32 `json:"protocol"`
	MinProtocol uint32 `json:"min_protocol"`
}

// Read is this binary's Info.
func Read() Info {
	info := Info{Version: "(unknown)", Protocol: wire.Protocol, MinProtocol: wire.MinProtocol}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.Version, info.GoVersion = bi.Main.Version, bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is Info on one line: "(devel) 3f2a1c9d0e12 2026-12-01T21:00:00Z
// modified, go1.26.8, protocol 1".
func (i Info) String() string {
	parts := []string{i.Version}
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		parts = append(parts, rev)
	}
	if i.Time != "" {
		parts = append(parts, i.Time)
	}
	if i.Modified {
		parts = append(parts, "modified")
	}
	s := strings.Join(parts, " ")
	if i.GoVersion != "" {
		s += ", " + i.GoVersion
	}
	return s + fmt.Sprintf(", protocol %d", i.Protocol)
}

// Proto is i on the wire.
func (i Info) Proto() *pbm.BuildInfo {
	return &pbm.BuildInfo{Version: i.Version, Revision: i.Revision, Time: i.Time, Modified: i.Modified,
		GoVersion: i.GoVersion, Protocol: i.Protocol, MinProtocol: i.MinProtocol}
}

// FromProto is the Info a peer sent; nil (a peer from before build info)
// is the zero Info, whose protocol wire.Check counts as 1.
func FromProto(b *pbm.BuildInfo) Info {
	return Info{Version: b.GetVersion(), Revision: b.GetRevision(), Time: b.GetTime(), Modified: b.GetModified(),
		GoVersion: b.GetGoVersion(), Protocol: b.GetProtocol(), MinProtocol: b.GetMinProtocol()}
}

// Side is i as one end of a link for wire.Check.
func (i Info) Side(name, upgrade string) wire.Side {
	return wire.Side{Name: name, Upgrade: upgrade, Protocol: i.Protocol, MinProtocol: i.MinProtocol}
}

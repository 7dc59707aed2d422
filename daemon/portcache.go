package daemon

import (
	"encoding/json"
	"maps"
	"os"
	"slices"

	pbm "github.com/tether-dev/tether/rpc/manager"
)

// The session cache also keeps where each intercept's flows go, so that a
// restarted daemon that resumes the session serves its intercepts as
// before: the manager keeps them ACTIVE across the restart, and a daemon
// that had forgotten their local ports would refuse every flow.

// cachedTarget is a target as the session cache keeps it.
type cachedTarget struct {
	Port    uint32            `json:"port"`
	Local   uint32            `json:"local_port"`
	Replace bool              `json:"replace,omitempty"`
	PortMap map[uint32]uint32 `json:"port_map,omitempty"`
	Covered []uint32          `json:"covered,omitempty"`
}

func toCached(ts map[string]target) map[string]cachedTarget {
	out := make(map[string]cachedTarget, len(ts))
	for id, t := range ts {
		out[id] = cachedTarget{Port: t.port, Local: t.local, Replace: t.replace, PortMap: maps.Clone(t.portMap), Covered: slices.Clone(t.covered)}
	}
	return out
}

func fromCached(cs map[string]cachedTarget) map[string]target {
	out := make(map[string]target, len(cs))
	for id, c := range cs {
		out[id] = target{port: c.Port, local: c.Local, replace: c.Replace, portMap: maps.Clone(c.PortMap), covered: slices.Clone(c.Covered)}
	}
	return out
}

// writeCacheLocked writes the session cache (cacheMu held).
func (d *Daemon) writeCacheLocked(c cachedCreds) {
	b, _ := json.Marshal(c)
	if err := os.WriteFile(d.credsPath(), b, 0o600); err != nil {
		d.log.Warn("cannot cache the session; a restarted daemon will open a new one", "error", err)
	}
}

// saveTargets records the intercepts' targets of session id in the cache;
// nothing when the cache holds another session by now.
func (d *Daemon) saveTargets(id string, ts map[string]target) {
	d.cacheMu.Lock()
	defer d.cacheMu.Unlock()
	c, ok := d.loadCreds()
	if !ok || c.ID != id {
		return
	}
	c.Intercepts = toCached(ts)
	d.writeCacheLocked(c)
}

// targetsChanged persists the session's targets after a change;
// persistMu keeps the file in the order of the changes.
func (s *session) targetsChanged() {
	if s.saveTargets == nil {
		return
	}
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	c := s.creds.Load()
	if c == nil {
		return
	}
	s.icepts.mu.Lock()
	ts := maps.Clone(s.icepts.targets)
	s.icepts.mu.Unlock()
	s.saveTargets(c.id, ts)
}

// restoreTargets gives a resumed session the targets its intercepts had
// before the daemon restarted. They are listed as if the manager had sent
// them, so that the manager's first list drops those it no longer has.
// A new session has none of the old intercepts: nothing to restore.
func (s *session) restoreTargets(ts map[string]target, resumed bool) {
	if !resumed || len(ts) == 0 {
		return
	}
	ic := &s.icepts
	ic.mu.Lock()
	defer ic.mu.Unlock()
	for id, t := range ts {
		ic.targets[id] = t
		ic.infos = append(ic.infos, &pbm.InterceptInfo{Id: id})
	}
	s.log.Info("restored the local ports of the session's intercepts", "intercepts", len(ts))
}

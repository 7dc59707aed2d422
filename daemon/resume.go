package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/activity"
	"github.com/tether-dev/tether/internal/clock"
)

// The activity record (<socket>.activity, beside the session cache) lets a
// restarted daemon tell its true idle time, and judge by itself whether
// grpc.connectionTTL has ended its session: the manager forgets endings
// after one TTL, and a manager that restarted knows nothing at all. Clock
// readings are internal/clock.Boot, which counts suspend and means nothing
// after a reboot, hence the boot's id and wall time.
type activityRecord struct {
	BootID   string    `json:"boot_id,omitempty"`
	BootedAt time.Time `json:"booted_at"`
	AtMs     int64     `json:"last_activity_boot_ms"`
	Reason   string    `json:"reason,omitempty"`
	TTLMs    int64     `json:"connection_ttl_ms"` // grpc.connectionTTL as the manager said at arrive
}

func (d *Daemon) activityPath() string { return d.cfg.Socket + ".activity" }

// saveActivity records the last activity of snap and the session's TTL.
func (d *Daemon) saveActivity(snap activity.Snapshot, ttl time.Duration) {
	if !snap.Known {
		return
	}
	rec := activityRecord{BootID: clock.BootID(), BootedAt: clock.BootedAt(), AtMs: snap.At.Milliseconds(), Reason: snap.Reason, TTLMs: ttl.Milliseconds()}
	b, _ := json.Marshal(rec)
	// The reporter and connect both write; a rename keeps the file whole.
	d.activityMu.Lock()
	defer d.activityMu.Unlock()
	tmp := d.activityPath() + ".tmp"
	err := os.WriteFile(tmp, b, 0o600)
	if err == nil {
		err = os.Rename(tmp, d.activityPath())
	}
	if err != nil {
		d.log.Warn("cannot record the last activity; a restarted daemon will not resume by itself", "error", err)
	}
}

func (d *Daemon) loadActivity() (activityRecord, bool) {
	var rec activityRecord
	b, err := os.ReadFile(d.activityPath())
	if err != nil || json.Unmarshal(b, &rec) != nil {
		return rec, false
	}
	return rec, true
}

// restoreActivity decides whether this daemon may resume its cached session
// by itself, and if so gives the tracker the last activity of the daemon
// before it. It returns why not, or "".
func (d *Daemon) restoreActivity() string {
	rec, ok := d.loadActivity()
	why := resumeRefusal(rec, ok, ok && clock.SameBoot(rec.BootID, rec.BootedAt), clock.Boot())
	if why == "" && d.tracker.Snapshot().Events == 0 {
		d.tracker.Restore(time.Duration(rec.AtMs)*time.Millisecond, rec.Reason)
	}
	return why
}

// resumeRefusal says why a daemon must not resume a session by itself, or
// "" when it may: only when its record (from this boot, now being a
// reading of the same clock) says the session was used within the TTL.
// Not knowing is no licence: nothing that is not real activity may keep a
// session alive, and a session the TTL ended is final. Commands run since
// this daemon started (a `tether status`) are no licence either: only a
// connect starts a session.
func resumeRefusal(rec activityRecord, ok, sameBoot bool, now time.Duration) string {
	const hint = "; `tether connect` starts a new session"
	switch {
	case !ok:
		return "the previous session was not resumed: its last activity is not recorded" + hint
	case !sameBoot || rec.AtMs > now.Milliseconds():
		return "the previous session was not resumed: the machine restarted since, so its idle time is unknown" + hint
	}
	idle := now - time.Duration(rec.AtMs)*time.Millisecond
	if ttl := time.Duration(rec.TTLMs) * time.Millisecond; ttl > 0 && idle > ttl {
		return ttlEnded(ttl, idle)
	}
	return ""
}

// ttlEnded is why a daemon ended its session by itself: the manager would
// have (or has).
func ttlEnded(ttl, idle time.Duration) string {
	return fmt.Sprintf("session ended: inactive for %s (grpc.connectionTTL), last activity %s ago; `tether connect` starts a new session",
		ttl, idle.Round(time.Second))
}

// endedByManager reports whether err says the manager ended the session
// (codes.NotFound, from Arrive or Report): that is final, never retried.
func endedByManager(err error) (reason string, ok bool) {
	if status.Code(err) != codes.NotFound {
		return "", false
	}
	return status.Convert(err).Message(), true
}

// endedError is a session start refused because the manager ended the
// session.
type endedError struct{ reason string }

func (e *endedError) Error() string { return e.reason }

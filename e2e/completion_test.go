package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCompletion: shell completion asks the real daemon and manager, and
// a TAB is never activity.
func TestCompletion(t *testing.T) {
	tm := newTeam(t)
	activityEvents := func() float64 {
		out, err := tm.as(tm.alice, "--no-activity", "status", "--json")
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		st := map[string]any{}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		return st["counters"].(map[string]any)["activity_events"].(float64)
	}
	complete := func(args ...string) []string {
		t.Helper()
		out, err := tm.as(tm.alice, append([]string{"__complete"}, args...)...)
		if err != nil {
			t.Fatalf("__complete %v: %v\n%s", args, err, out)
		}
		// The output mixes stdout's suggestions and directive (":4") with
		// stderr's "Completion ended with directive ...".
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(line, ":") && !strings.HasPrefix(line, "Completion ended") {
				got = append(got, line)
			}
		}
		return got
	}

	// The agent serves default/web: it completes before anyone intercepts.
	if got := complete("intercept", "x", "--workload", ""); strings.Join(got, ",") != workload {
		t.Fatalf("--workload completes %q, want %s", got, workload)
	}
	if out, err := tm.intercept(tm.alice, "mine", "--http-header", "x-user=alice"); err != nil {
		t.Fatalf("intercept: %v\n%s", err, out)
	}
	before := activityEvents()
	if got := complete("leave", ""); strings.Join(got, ",") != "mine" {
		t.Fatalf("leave completes %q, want mine", got)
	}
	var id string
	for _, r := range tm.list(tm.alice) {
		id, _ = r["id"].(string)
	}
	if got := complete("revoke", ""); len(got) != 1 || !strings.HasPrefix(got[0], id+"\tmine of alice@") {
		t.Fatalf("revoke completes %q, want %s described", got, id)
	}
	if after := activityEvents(); after != before {
		t.Fatalf("completion counted as activity: %v events before, %v after", before, after)
	}
}

package tunnel

import "testing"

// The daemon's and the agent's pings (DialOptions) must stay within the
// manager's enforcement policy (ServerOptions), or the manager answers
// with GOAWAY "too_many_pings" and drops every flow of the link.
func TestClientPingsWithinServerPolicy(t *testing.T) {
	if keepaliveTime < keepaliveMinTime {
		t.Fatalf("clients ping every %v, the manager allows at most one per %v", keepaliveTime, keepaliveMinTime)
	}
}

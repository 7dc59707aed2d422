package tunnel_test

import (
	"testing"
	"time"

	"github.com/tether-dev/tether/tunnel"
)

// Reconnects start at 200 ms ±20 %, grow, never exceed MaxBackoff, and are
// jittered (a fleet of daemons does not retry in step).
func TestReconnectDelay(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		d := tunnel.ReconnectDelay(0)
		if d < 160*time.Millisecond || d > 240*time.Millisecond {
			t.Fatalf("first delay %v, want 200 ms ±20 %%", d)
		}
		seen[d] = true
		if d := tunnel.ReconnectDelay(100); d > tunnel.MaxBackoff || d < tunnel.MaxBackoff*8/10 {
			t.Fatalf("delay after 100 failures %v, want at most and about %v", d, tunnel.MaxBackoff)
		}
	}
	if len(seen) < 10 {
		t.Errorf("50 first delays took %d values: no jitter", len(seen))
	}
	if a, b := tunnel.ReconnectDelay(2), tunnel.ReconnectDelay(5); b <= a {
		t.Errorf("delay after 5 failures (%v) not above delay after 2 (%v)", b, a)
	}
}

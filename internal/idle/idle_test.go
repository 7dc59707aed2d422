package idle

import (
	"testing"
	"time"
)

func TestTimerExpiresOnlyWhenUnused(t *testing.T) {
	expired := make(chan time.Time, 1)
	start := time.Now()
	it := New(500*time.Millisecond, func() { expired <- time.Now() })
	defer it.Stop()
	// Touching keeps it alive past several timeouts.
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		it.Touch()
	}
	select {
	case <-expired:
		t.Fatal("expired while in use")
	default:
	}
	select {
	case at := <-expired:
		if at.Sub(start) < 1500*time.Millisecond {
			t.Fatalf("expired %v after start, before the last touch plus the timeout", at.Sub(start))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("never expired")
	}
}

func TestStopPreventsExpiry(t *testing.T) {
	it := New(50*time.Millisecond, func() { t.Error("expired after Stop") })
	it.Stop()
	time.Sleep(150 * time.Millisecond)
}

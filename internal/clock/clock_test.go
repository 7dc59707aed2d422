package clock

import (
	"testing"
	"time"
)

func TestBootAdvancesWithWallTime(t *testing.T) {
	b0, w0 := Boot(), time.Now()
	time.Sleep(50 * time.Millisecond)
	db, dw := Boot()-b0, time.Since(w0)
	if db <= 0 || (db-dw).Abs() > 20*time.Millisecond {
		t.Fatalf("boot clock moved %v while %v passed", db, dw)
	}
}

func TestSameBoot(t *testing.T) {
	if !SameBoot(BootID(), BootedAt()) {
		t.Fatal("this boot is not the same boot")
	}
	if SameBoot("another boot", BootedAt().Add(-time.Hour)) {
		t.Fatal("another boot taken for this one")
	}
}

// Boot is read on every new flow (the activity tracker).
func TestBootAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { Boot() }); n != 0 {
		t.Fatalf("Boot allocates %v per call", n)
	}
}

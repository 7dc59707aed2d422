package vif

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"
)

// goroutineID is the id of the calling goroutine, from its stack header.
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b, _, _ = bytes.Cut(bytes.TrimPrefix(b, []byte("goroutine ")), []byte(" "))
	return string(b)
}

// Work runs on goroutines that ran earlier work, and idle workers end with
// the context.
func TestWorkersAreKept(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := newWorkers(ctx)
	seen := map[string]bool{}
	reused := false
	for i := 0; i < 1000 && !reused; i++ {
		ran := make(chan string)
		w.Go(func() { ran <- goroutineID() })
		id := <-ran
		reused = seen[id]
		seen[id] = true
		time.Sleep(time.Millisecond) // the worker goes back to waiting
	}
	if !reused {
		t.Errorf("%d runs, each on a new goroutine", len(seen))
	}
	cancel()
	w.Wait()
}

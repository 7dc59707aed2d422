package vif

import (
	"context"
	"sync"
	"time"
)

// workerIdle is how long a worker waits for work before it ends.
const workerIdle = 30 * time.Second

// workers runs the goroutines of flows on goroutines that outlive them. A
// flow's goroutine runs gVisor's deep send path, which grew a new
// goroutine's stack, by copying, several times on every connection (8 % of
// the daemon's CPU on short connections); a kept goroutine has grown
// already. An idle worker ends after workerIdle, or when ctx ends, so an
// idle VIF keeps none.
type workers struct {
	ctx  context.Context
	work chan func()
	wg   sync.WaitGroup
}

func newWorkers(ctx context.Context) *workers {
	return &workers{ctx: ctx, work: make(chan func())}
}

// Go runs f on an idle worker, or on a new one.
func (w *workers) Go(f func()) {
	select {
	case w.work <- f:
		return
	default:
	}
	w.wg.Add(1)
	go w.run(f)
}

func (w *workers) run(f func()) {
	defer w.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		f = nil // not kept alive while idle
		idle.Reset(workerIdle)
		select {
		case f = <-w.work:
		case <-idle.C:
			return
		case <-w.ctx.Done():
			return
		}
	}
}

// Wait waits for the workers to end, after ctx ended and the flows did.
func (w *workers) Wait() { w.wg.Wait() }

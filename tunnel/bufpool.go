package tunnel

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
)

// dirtyPool is gRPC's buffer pool without zeroing. gRPC's default pool
// clears every buffer it hands out, and profiles of bulk flows showed that
// clearing as 16% of the daemon's CPU; gRPC overwrites what it reads and
// encodes, so the zeroing buys nothing here.
//
// It is the process's default pool (see init): a pool given to a
// connection with WithBufferPool serves its transport, but the proto codec
// marshals every outgoing message into a buffer of the default pool, and
// that clearing was still 15 % of the daemon's CPU on a bulk upload.
type dirtyPool struct {
	tiers [maxTier + 1]sync.Pool // tier t holds buffers of capacity 1<<t
}

const (
	minTier = 8  // 256 B
	maxTier = 20 // 1 MiB; larger buffers are not pooled
)

var sharedPool = new(dirtyPool)

var _ mem.BufferPool = sharedPool

func tierFor(size int) int {
	if size <= 1<<minTier {
		return minTier
	}
	return bits.Len(uint(size - 1))
}

// Get returns a buffer of length size.
func (p *dirtyPool) Get(size int) *[]byte {
	t := tierFor(size)
	if t > maxTier {
		b := make([]byte, size)
		return &b
	}
	if bp, ok := p.tiers[t].Get().(*[]byte); ok {
		*bp = (*bp)[:size]
		return bp
	}
	b := make([]byte, size, 1<<t)
	return &b
}

// Put returns a buffer to its tier; buffers of other capacities are dropped.
func (p *dirtyPool) Put(bp *[]byte) {
	c := cap(*bp)
	if c < 1<<minTier || c&(c-1) != 0 {
		return
	}
	if t := bits.Len(uint(c)) - 1; t <= maxTier {
		p.tiers[t].Put(bp)
	}
}

// The default pool must be set at initialization (grpc experimental).
func init() { experimental.SetDefaultBufferPool(sharedPool) }

package tunnel

import (
	"testing"

	"google.golang.org/grpc/mem"
)

func TestDirtyPoolSizes(t *testing.T) {
	for _, size := range []int{0, 1, 255, 256, 257, 16 << 10, 1 << 20, 1<<20 + 1} {
		bp := sharedPool.Get(size)
		if len(*bp) != size {
			t.Fatalf("Get(%d) has length %d", size, len(*bp))
		}
		if size > 0 && cap(*bp) > 2*size && cap(*bp) > 1<<minTier {
			t.Fatalf("Get(%d) has capacity %d", size, cap(*bp))
		}
		sharedPool.Put(bp)
	}
}

// The proto codec marshals into gRPC's default pool, which no per-link
// option reaches: the dirty pool must be that default.
func TestDirtyPoolIsTheDefault(t *testing.T) {
	if got := mem.DefaultBufferPool(); got != mem.BufferPool(sharedPool) {
		t.Fatalf("gRPC's default buffer pool is %T, not the dirty pool", got)
	}
}

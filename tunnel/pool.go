package tunnel

import "sync"

// chunkSize is the most one read forwards in one frame.
const chunkSize = 128 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

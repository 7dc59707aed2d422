//go:build unix

package tunnel

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Readers waiting on idle connections hold no buffer: 100 of them make far
// fewer than 100 buffers (a few, plus the ones the race detector's pool
// drops at random). Each still gets its data.
func TestIdleReadsHoldNoBuffer(t *testing.T) {
	var made atomic.Int32
	old := chunkPool.New
	chunkPool.New = func() any { made.Add(1); return old() }
	t.Cleanup(func() { chunkPool.New = old })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const n = 100
	var servers []net.Conn
	var wg sync.WaitGroup
	got := make(chan int, n)
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		servers = append(servers, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			bp, k, err := readPooled(c.(*net.TCPConn))
			if err != nil {
				t.Error(err)
				return
			}
			chunkPool.Put(bp)
			got <- k
		}()
	}
	time.Sleep(200 * time.Millisecond) // the readers try once and wait
	if m := made.Load(); m > n/2 {
		t.Errorf("%d waiting readers made %d buffers: they hold them while they wait", n, m)
	}
	for _, s := range servers {
		s.Write([]byte("hi"))
	}
	wg.Wait()
	close(got)
	for k := range got {
		if k != 2 {
			t.Fatalf("read %d bytes, want 2", k)
		}
	}
}

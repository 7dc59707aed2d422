package vif

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// chunkSize is the most one read from the stack forwards in one message. A
// TSO superpacket is up to 64 KiB; forwarding several per message halves the
// per-message cost of gRPC.
const chunkSize = 128 << 10

// chunkPool holds read buffers. A flow takes one only while data is
// waiting, so an idle connection holds none.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// handleTCP runs in a goroutine of gVisor's for each new connection (one
// per SYN, retransmitted SYNs are merged by the forwarder); the connection
// runs on a worker.
func (v *VIF) handleTCP(req *tcp.ForwarderRequest) {
	if !v.flows.Add() {
		req.Complete(true)
		return
	}
	v.workers.Go(func() {
		defer v.flows.Done()
		v.runTCP(req)
	})
}

// runTCP runs a connection. The handshake with the local program completes
// only after the cluster side accepted: a refusal becomes a reset.
func (v *VIF) runTCP(req *tcp.ForwarderRequest) {
	id := flowID(TCP, req.ID())
	v.tcpFlows.Add(1)
	ctx, cancel := context.WithCancel(v.ctx)
	defer cancel()
	remote, err := v.open(ctx, id)
	if err != nil {
		v.tcpFailed.Add(1)
		v.log.Debug("TCP open failed; resetting", "flow", id, "error", err)
		req.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := createEndpoint(ctx, req, &wq)
	if terr != nil {
		// The local program gave up (e.g. its SYN timed out) meanwhile.
		req.Complete(true)
		remote.Close(true)
		v.log.Debug("TCP handshake with local program failed", "flow", id, "error", terr)
		return
	}
	req.Complete(false)
	v.tcpLive.Add(1)
	defer v.tcpLive.Add(^uint64(0))
	c := &tcpConn{ep: ep, wq: &wq, ctx: ctx}
	v.splice(c, remote)
}

// createEndpoint completes the handshake with the local program; it fails
// once ctx ends. req.CreateEndpoint waits for the handshake, which
// retransmits for two minutes when the local program is gone, and which the
// stack's Close does not abort if it began after it. Notifying wq is what
// ends that wait (the handshake counts as failed), but a notification before
// CreateEndpoint has registered its waiter is lost: repeat it until
// CreateEndpoint returns.
func createEndpoint(ctx context.Context, req *tcp.ForwarderRequest, wq *waiter.Queue) (tcpip.Endpoint, tcpip.Error) {
	if ctx.Err() != nil {
		return nil, &tcpip.ErrAborted{}
	}
	created := make(chan struct{})
	wakerDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(wakerDone)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			wq.Notify(waiter.WritableEvents)
			select {
			case <-created:
				return
			case <-t.C:
			}
		}
	})
	ep, err := req.CreateEndpoint(wq)
	close(created)
	if !stop() {
		<-wakerDone
	}
	return ep, err
}

// splice copies both directions until both are closed or one is reset.
func (v *VIF) splice(c *tcpConn, r Remote) {
	toLocalDone := make(chan error, 1)
	v.workers.Go(func() {
		err := v.copyToLocal(c, r)
		if err != nil {
			// The cluster side was reset or lost: reset the local program
			// now, which also ends copyToRemote's wait for its data.
			c.ep.Abort()
		}
		toLocalDone <- err
	})
	resetRemote := v.copyToRemote(c, r)
	var toLocalErr error
	if resetRemote {
		r.Close(true)
		c.ep.Abort()
		toLocalErr = <-toLocalDone
	} else {
		reset, stop := c.resetCh()
		select {
		case toLocalErr = <-toLocalDone:
			stop()
		case <-reset:
			// The local program reset the connection after its
			// half-close; the cluster side is still sending.
			stop()
			r.Close(true)
			c.ep.Abort()
			<-toLocalDone
			return
		}
		if toLocalErr != nil {
			r.Close(true)
			return
		}
		r.Close(false)
	}
	c.ep.Close()
}

// copyToRemote forwards what the local program sends. It reports whether
// the remote side must be reset.
func (v *VIF) copyToRemote(c *tcpConn, r Remote) (reset bool) {
	for {
		bp, n, err := c.read()
		if n > 0 {
			serr := r.Send((*bp)[:n])
			chunkPool.Put(bp)
			if serr != nil {
				return true
			}
			v.bytesOut.Add(uint64(n))
		} else if bp != nil {
			chunkPool.Put(bp)
		}
		switch err.(type) {
		case nil:
		case *tcpip.ErrClosedForReceive:
			// FIN from the local program.
			if r.CloseWrite() != nil {
				return true
			}
			return false
		default:
			return true
		}
	}
}

// copyToLocal forwards what the cluster sends; a non-nil error means the
// flow must be reset.
func (v *VIF) copyToLocal(c *tcpConn, r Remote) error {
	for {
		b, err := r.Recv()
		if err == io.EOF {
			c.ep.Shutdown(tcpip.ShutdownWrite)
			return nil
		}
		if err != nil {
			return err
		}
		if err := c.write(b); err != nil {
			return err
		}
		v.bytesIn.Add(uint64(len(b)))
	}
}

// tcpConn is a gVisor TCP endpoint with blocking reads and writes, without
// gonet's per-connection buffer: a read buffer is taken from the pool only
// once data is there.
type tcpConn struct {
	ep  tcpip.Endpoint
	wq  *waiter.Queue
	ctx context.Context
}

var errClosed = errors.New("flow closed")

// read returns a pooled buffer holding n bytes, or the endpoint's error.
func (c *tcpConn) read() (*[]byte, int, tcpip.Error) {
	entry, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	c.wq.EventRegister(&entry)
	defer c.wq.EventUnregister(&entry)
	for {
		bp := chunkPool.Get().(*[]byte)
		w := tcpip.SliceWriter(*bp)
		res, err := c.ep.Read(&w, tcpip.ReadOptions{})
		if _, ok := err.(*tcpip.ErrWouldBlock); ok {
			chunkPool.Put(bp)
			select {
			case <-ch:
				continue
			case <-c.ctx.Done():
				return nil, 0, &tcpip.ErrAborted{}
			}
		}
		return bp, res.Count, err
	}
}

// write writes all of b, waiting while the send buffer is full.
func (c *tcpConn) write(b []byte) error {
	entry, ch := waiter.NewChannelEntry(waiter.WritableEvents)
	c.wq.EventRegister(&entry)
	defer c.wq.EventUnregister(&entry)
	var r bytes.Reader
	r.Reset(b)
	for r.Len() > 0 {
		_, err := c.ep.Write(&r, tcpip.WriteOptions{})
		if err == nil {
			continue
		}
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			return errors.New(err.String())
		}
		select {
		case <-ch:
		case <-c.ctx.Done():
			return errClosed
		}
	}
	return nil
}

// resetCh returns a channel closed when the endpoint hangs up with an
// error, so a reset after the local half-close is noticed while the other
// direction is idle, and the func that stops listening.
func (c *tcpConn) resetCh() (<-chan struct{}, func()) {
	done := make(chan struct{})
	var once sync.Once
	check := func(waiter.EventMask) {
		if tcp.EndpointState(c.ep.State()) == tcp.StateError {
			once.Do(func() { close(done) })
		}
	}
	entry := waiter.NewFunctionEntry(waiter.EventHUp|waiter.EventErr, check)
	c.wq.EventRegister(&entry)
	check(0) // it may have happened before we listened
	return done, func() { c.wq.EventUnregister(&entry) }
}

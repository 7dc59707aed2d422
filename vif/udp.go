package vif

import (
	"bytes"
	"context"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/tether-dev/tether/internal/idle"
)

// maxDatagram is the largest UDP payload.
const maxDatagram = 65535

// handleUDP is called on the packet path for the first datagram of each new
// 5-tuple, so it must not block: the flow runs on a worker.
func (v *VIF) handleUDP(req *udp.ForwarderRequest) bool {
	id := flowID(UDP, req.ID())
	if !v.flows.Add() {
		return true // closing: the datagram is dropped
	}
	var wq waiter.Queue
	ep, err := req.CreateEndpoint(&wq)
	if err != nil {
		v.flows.Done()
		v.log.Debug("UDP endpoint", "flow", id, "error", err)
		return true
	}
	v.udpFlows.Add(1)
	v.udpLive.Add(1)
	v.workers.Go(func() {
		defer v.flows.Done()
		defer v.udpLive.Add(^uint64(0))
		defer ep.Close()
		v.runUDP(id, ep, &wq)
	})
	return true
}

// runUDP forwards datagrams both ways until the flow has been idle for the
// idle timeout, the remote side fails, or the VIF closes.
func (v *VIF) runUDP(id FlowID, ep tcpip.Endpoint, wq *waiter.Queue) {
	ctx, cancel := context.WithCancel(v.ctx)
	defer cancel()
	remote, err := v.open(ctx, id)
	if err != nil {
		v.log.Debug("UDP open failed", "flow", id, "error", err)
		return
	}
	defer remote.Close(true)

	timer := idle.New(v.udpIdle, cancel)
	defer timer.Stop()
	touch := timer.Touch

	toLocalDone := make(chan struct{})
	v.workers.Go(func() {
		defer close(toLocalDone)
		defer cancel()
		for {
			b, err := remote.Recv()
			if err != nil {
				return
			}
			touch()
			var r bytes.Reader
			r.Reset(b)
			if _, err := ep.Write(&r, tcpip.WriteOptions{}); err != nil {
				v.log.Debug("UDP write to local program", "flow", id, "error", err)
				continue
			}
			v.bytesIn.Add(uint64(len(b)))
		}
	})
	v.udpToRemote(ctx, ep, wq, remote, touch)
	cancel()
	<-toLocalDone
}

func (v *VIF) udpToRemote(ctx context.Context, ep tcpip.Endpoint, wq *waiter.Queue, remote Remote, touch func()) {
	entry, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	buf := make([]byte, maxDatagram)
	for {
		w := tcpip.SliceWriter(buf)
		res, err := ep.Read(&w, tcpip.ReadOptions{})
		if _, ok := err.(*tcpip.ErrWouldBlock); ok {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return
			}
		}
		if err != nil {
			return
		}
		touch()
		if remote.Send(buf[:res.Count]) != nil {
			return
		}
		v.bytesOut.Add(uint64(res.Count))
	}
}

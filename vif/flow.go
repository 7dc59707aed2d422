package vif

import (
	"context"
	"fmt"
	"net/netip"
)

// Proto is the transport protocol of a flow.
type Proto uint8

const (
	TCP Proto = iota + 1
	UDP
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// FlowID names a flow as the host sees it: Src is the local program's
// address, Dst the cluster address it connects to.
type FlowID struct {
	Proto Proto
	Src   netip.AddrPort
	Dst   netip.AddrPort
}

func (id FlowID) String() string {
	return fmt.Sprintf("%s %s->%s", id.Proto, id.Src, id.Dst)
}

// Remote is the cluster side of one flow. For TCP it is a byte stream, for
// UDP each Send and Recv is one datagram.
//
// Send and CloseWrite are called from one goroutine, Recv from another;
// Close may be called from either, after both are done or to abort them.
type Remote interface {
	// Send transmits b; it blocks while the remote side applies backpressure.
	// b may be reused once Send returns.
	Send(b []byte) error
	// Recv returns the next chunk, valid until the next Recv. It returns
	// io.EOF once the remote side has half-closed (TCP) and any other error
	// when the flow was reset or broken.
	Recv() ([]byte, error)
	// CloseWrite tells the remote side that no more data follows.
	CloseWrite() error
	// Close releases the flow. With reset, the remote side's connection is
	// aborted; without, Close waits until the remote side has delivered
	// everything that was sent.
	Close(reset bool)
}

// Opener opens the cluster side of a new flow. For TCP it must return only
// once the destination has accepted the connection, so that a refused or
// unreachable destination becomes a reset of the local connection. ctx
// bounds the life of the whole flow, not only the open.
type Opener func(ctx context.Context, id FlowID) (Remote, error)

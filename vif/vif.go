package vif

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tether-dev/tether/internal/goroutines"
)

// Config configures a VIF.
type Config struct {
	// Name of the TUN device; a "%d" in it is replaced by the kernel.
	Name string
	MTU  int
	// Open opens the cluster side of each new flow.
	Open Opener
	// UDPIdleTimeout ends a UDP flow with no datagram in either direction
	// for that long. Zero means DefaultUDPIdleTimeout.
	UDPIdleTimeout time.Duration
	Log            *slog.Logger
}

const (
	DefaultMTU            = 1500
	DefaultUDPIdleTimeout = 60 * time.Second
)

// Stats are the flow counters of a VIF.
type Stats struct {
	TCPFlows     uint64 // TCP flows opened since start
	TCPLive      uint64 // TCP flows open now
	TCPFailed    uint64 // TCP connections reset because the open failed
	UDPFlows     uint64
	UDPLive      uint64
	BytesOut     uint64 // payload bytes toward the cluster
	BytesIn      uint64 // payload bytes from the cluster
	RxPackets    uint64 // packets read from the TUN (a TSO superpacket is one)
	TxPackets    uint64 // packets written to the TUN
	TxGSOPackets uint64 // of those, superpackets segmented by the kernel
}

// VIF is a TUN device served by a gVisor stack.
type VIF struct {
	dev     tun.Device
	name    string
	ep      *linkEndpoint
	stack   *stack.Stack
	open    Opener
	log     *slog.Logger
	udpIdle time.Duration

	// ctx is alive until Close; every flow derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	// flows counts the flows; gVisor starts the goroutine of each TCP flow,
	// which must not join once Close waits for them.
	flows   goroutines.Group
	workers *workers // run the flows

	tcpFlows, tcpLive, tcpFailed atomic.Uint64
	udpFlows, udpLive            atomic.Uint64
	bytesOut, bytesIn            atomic.Uint64

	events chan struct{} // closed when the device's event channel is drained

	closeOnce sync.Once
	closeErr  error
}

// New creates the TUN device and the stack serving it. The device is left
// down and unrouted: that is the platform's job.
func New(cfg Config) (*VIF, error) {
	if cfg.Open == nil {
		return nil, errors.New("vif: no Opener")
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.UDPIdleTimeout == 0 {
		cfg.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	dev, frames, err := createTUN(cfg.Name, cfg.MTU)
	if err != nil {
		return nil, fmt.Errorf("create TUN %q: %w", cfg.Name, err)
	}
	return newVIF(dev, frames, cfg)
}

// newVIF builds the stack around dev, which it owns from then on: it closes
// dev when it fails. frames, for a device with a virtio_net_hdr, is what
// inbound frames are read from. cfg has its defaults filled in. Tests pass
// a fake device here.
func newVIF(dev tun.Device, frames io.Reader, cfg Config) (*VIF, error) {
	log := cfg.Log.With("component", "vif")
	name, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("name of TUN: %w", err)
	}
	v := &VIF{dev: dev, name: name, open: cfg.Open, log: log.With("device", name), udpIdle: cfg.UDPIdleTimeout}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	v.workers = newWorkers(v.ctx)
	v.ep = newLinkEndpoint(dev, uint32(cfg.MTU), frames, v.log)
	v.stack, err = newStack(v.ep, v.handleTCP, v.handleUDP)
	if err != nil {
		v.cancel()
		dev.Close()
		return nil, err
	}
	// wireguard-go's link watchers block once their event channel (5
	// slots) is full, so someone must drain it; it closes with the device.
	v.events = make(chan struct{})
	go func() {
		defer close(v.events)
		for ev := range dev.Events() {
			v.log.Debug("TUN event", "event", ev)
		}
	}()
	v.log.Info("VIF up", "mtu", cfg.MTU, "offloads", v.Offloads())
	return v, nil
}

// Name is the TUN device's name.
func (v *VIF) Name() string { return v.name }

// Offloads says which packet offloads are in use, for status and logs.
func (v *VIF) Offloads() string {
	if v.ep.frames != nil {
		return fmt.Sprintf("vnet-hdr tso-in host-gso(max %d)", maxGSOSize)
	}
	return "none (device without virtio-net header)"
}

// Stats returns the counters.
func (v *VIF) Stats() Stats {
	return Stats{
		TCPFlows:     v.tcpFlows.Load(),
		TCPLive:      v.tcpLive.Load(),
		TCPFailed:    v.tcpFailed.Load(),
		UDPFlows:     v.udpFlows.Load(),
		UDPLive:      v.udpLive.Load(),
		BytesOut:     v.bytesOut.Load(),
		BytesIn:      v.bytesIn.Load(),
		RxPackets:    v.ep.stats.rxPackets.Load(),
		TxPackets:    v.ep.stats.txPackets.Load(),
		TxGSOPackets: v.ep.stats.txGSO.Load(),
	}
}

// Close resets every flow, removes the stack and closes the device. It is
// idempotent.
func (v *VIF) Close() error {
	v.closeOnce.Do(func() {
		v.flows.Close()
		// The stack first: it aborts every handshake in progress through
		// the endpoint's state, and stops its segment processors. Ending
		// the flows' contexts first woke the handshakes' waits (see
		// createEndpoint) while the endpoints were still connecting: gVisor
		// then clears an endpoint's handshake before it closes it, and a
		// processor handling a segment for it in that moment dereferences
		// the nil handshake (a panic FuzzLinkEndpoint found).
		v.stack.Close()
		v.cancel()
		v.closeErr = v.dev.Close()
		<-v.events
		v.ep.Wait()
		v.flows.Wait()
		v.workers.Wait()
		v.stack.Wait()
		v.log.Info("VIF down")
	})
	return v.closeErr
}

func flowID(proto Proto, id stack.TransportEndpointID) FlowID {
	// Seen from the stack, the local end is the cluster address the host
	// connected to and the remote end is the host's program.
	return FlowID{
		Proto: proto,
		Src:   netip.AddrPortFrom(addrFrom(id.RemoteAddress), id.RemotePort),
		Dst:   netip.AddrPortFrom(addrFrom(id.LocalAddress), id.LocalPort),
	}
}

func addrFrom(a tcpip.Address) netip.Addr {
	addr, _ := netip.AddrFromSlice(a.AsSlice())
	return addr
}

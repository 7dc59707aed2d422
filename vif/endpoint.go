package vif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

const (
	// readOffset is where packets start in tun.Device.Read buffers:
	// darwin's utun reads a 4-byte header in front; 16 keeps the IP header
	// aligned.
	readOffset = 16
	// virtioNetHdrLen is sizeof(struct virtio_net_hdr).
	virtioNetHdrLen = 10
	// maxGSOSize bounds the superpackets gVisor hands us and the kernel
	// sends us: an IPv4 packet cannot be longer.
	maxGSOSize = 65535
)

// virtio_net_hdr constants (include/uapi/linux/virtio_net.h).
const (
	virtioNetHdrFNeedsCsum = 1
	virtioNetHdrGSONone    = 0
	virtioNetHdrGSOTCPv4   = 1
	virtioNetHdrGSOTCPv6   = 4
	virtioNetHdrGSOECN     = 0x80
)

// endpointStats are the packet counters of the link endpoint. They are
// atomics because the reader and any number of writers update them.
type endpointStats struct {
	rxPackets atomic.Uint64 // packets read from the TUN (a TSO superpacket is one)
	txPackets atomic.Uint64 // packets written to the TUN
	txGSO     atomic.Uint64 // of those, superpackets the kernel segments
}

// linkEndpoint connects a TUN device to gVisor. It implements
// stack.LinkEndpoint and stack.GSOEndpoint.
//
// Inbound, one goroutine reads the device and hands each packet to the
// stack. With a virtio_net_hdr it reads frames itself (frames), one per
// read: a TSO superpacket from the kernel reaches the stack whole, where
// tun.Device.Read would split it into MSS packets with checksums computed
// in software, for gVisor's GRO to merge them again (~15 % of the daemon's
// CPU on an upload). Outbound, WritePackets writes each packet to the
// device file itself, prefixed with a virtio_net_hdr when the device has
// one, rather than through tun.Device.Write: that keeps gVisor's GSO
// superpackets whole (the kernel segments them) and needs no lock.
type linkEndpoint struct {
	dev    tun.Device
	file   *os.File
	frames io.Reader // a device with a virtio_net_hdr: one frame per Read; else nil
	mtu    uint32
	log    *slog.Logger

	stats endpointStats

	// mu guards dispatcher and started.
	mu         sync.Mutex
	dispatcher stack.NetworkDispatcher
	started    bool
	done       chan struct{} // closed when the reader returns

	bufPool sync.Pool // *[]byte of virtioNetHdrLen+maxGSOSize, for writes
}

var (
	_ stack.LinkEndpoint = (*linkEndpoint)(nil)
	_ stack.GSOEndpoint  = (*linkEndpoint)(nil)
)

// newLinkEndpoint connects dev to the stack. frames is non-nil for a device
// with a virtio_net_hdr: what inbound frames are read from (the device's
// file, or a test's stand-in).
func newLinkEndpoint(dev tun.Device, mtu uint32, frames io.Reader, log *slog.Logger) *linkEndpoint {
	e := &linkEndpoint{dev: dev, file: dev.File(), frames: frames, mtu: mtu, log: log, done: make(chan struct{})}
	e.bufPool.New = func() any {
		b := make([]byte, virtioNetHdrLen+maxGSOSize)
		return &b
	}
	return e
}

// MTU implements stack.LinkEndpoint.
func (e *linkEndpoint) MTU() uint32 { return e.mtu }

// SetMTU implements stack.LinkEndpoint. The MTU is the device's; the stack
// never changes it.
func (e *linkEndpoint) SetMTU(uint32) {}

// MaxHeaderLength implements stack.LinkEndpoint: a TUN has no link header.
func (e *linkEndpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint.
func (e *linkEndpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.LinkEndpoint.
func (e *linkEndpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint. Every packet comes from the
// local kernel, and a frame's partial checksum (NEEDS_CSUM) is passed on
// unfinished, so the stack must not check checksums: gVisor's NIC marks
// each inbound packet validated from RX checksum offload.
func (e *linkEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}

// GSOMaxSize implements stack.GSOEndpoint.
func (e *linkEndpoint) GSOMaxSize() uint32 { return maxGSOSize }

// SupportedGSO implements stack.GSOEndpoint: the kernel segments for us when
// it can read a virtio_net_hdr.
func (e *linkEndpoint) SupportedGSO() stack.SupportedGSO {
	if e.frames != nil {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// Attach implements stack.LinkEndpoint. The first non-nil dispatcher starts
// the reader.
func (e *linkEndpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dispatcher = d
	if d != nil && !e.started {
		e.started = true
		go e.readLoop(d)
	}
}

// IsAttached implements stack.LinkEndpoint.
func (e *linkEndpoint) IsAttached() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dispatcher != nil
}

// Wait implements stack.LinkEndpoint: it returns once the reader stopped,
// which happens when the device is closed.
func (e *linkEndpoint) Wait() {
	e.mu.Lock()
	started := e.started
	e.mu.Unlock()
	if started {
		<-e.done
	}
}

// ARPHardwareType implements stack.LinkEndpoint.
func (e *linkEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint.
func (e *linkEndpoint) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint.
func (e *linkEndpoint) ParseHeader(*stack.PacketBuffer) bool { return true }

// Close implements stack.LinkEndpoint. The device belongs to the VIF, which
// closes it.
func (e *linkEndpoint) Close() {}

// SetOnCloseAction implements stack.LinkEndpoint.
func (e *linkEndpoint) SetOnCloseAction(func()) {}

// readLoop moves packets from the TUN into the stack until the device is
// closed.
func (e *linkEndpoint) readLoop(d stack.NetworkDispatcher) {
	defer close(e.done)
	var err error
	if e.frames != nil {
		err = e.readFrames(d)
	} else {
		err = e.readPackets(d)
	}
	if !errors.Is(err, os.ErrClosed) {
		e.log.Warn("TUN read failed; packet reader stops", "error", err)
	}
}

// readFrames reads frames, each a virtio_net_hdr and a packet, until an
// error.
func (e *linkEndpoint) readFrames(d stack.NetworkDispatcher) error {
	buf := make([]byte, virtioNetHdrLen+maxGSOSize)
	for {
		n, err := e.frames.Read(buf)
		if err != nil {
			return err
		}
		pkt, err := framePacket(buf[:n])
		if err != nil {
			e.log.Debug("inbound frame dropped", "error", err)
			continue
		}
		e.deliver(d, pkt)
	}
}

// framePacket returns the packet of a frame read from a device with a
// virtio_net_hdr. The packet goes to the stack as it is: a TCP
// superpacket's IP header already gives its whole length, and its checksum
// (partial when the header says NEEDS_CSUM) is left unchecked, as for every
// packet from the local kernel (Capabilities). UDP superpackets cannot be
// one datagram; the device is opened without UDP segmentation offload, so
// the kernel never sends them.
func framePacket(b []byte) ([]byte, error) {
	if len(b) < virtioNetHdrLen {
		return nil, fmt.Errorf("frame of %d bytes is shorter than a virtio_net_hdr", len(b))
	}
	pkt := b[virtioNetHdrLen:]
	switch gso := b[1] &^ virtioNetHdrGSOECN; gso {
	case virtioNetHdrGSONone:
	case virtioNetHdrGSOTCPv4, virtioNetHdrGSOTCPv6:
		want := header.IPv4Version
		if gso == virtioNetHdrGSOTCPv6 {
			want = header.IPv6Version
		}
		if header.IPVersion(pkt) != want {
			return nil, fmt.Errorf("TCP segmentation frame (type %d) does not hold an IPv%d packet", gso, want)
		}
	default:
		return nil, fmt.Errorf("unsupported segmentation type %d", b[1])
	}
	return pkt, nil
}

// readPackets reads a device without a virtio_net_hdr until an error. Real
// ones return one packet per read; the batch serves the test device.
func (e *linkEndpoint) readPackets(d stack.NetworkDispatcher) error {
	batch := e.dev.BatchSize()
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, readOffset+int(e.mtu))
	}
	sizes := make([]int, batch)
	for {
		n, err := e.dev.Read(bufs, sizes, readOffset)
		for i := 0; i < n; i++ {
			e.deliver(d, bufs[i][readOffset:readOffset+sizes[i]])
		}
		if err != nil {
			return err
		}
	}
}

// deliver hands one IP packet to the stack. Anything that is not IPv4 or
// IPv6 is dropped here; gVisor validates the rest.
func (e *linkEndpoint) deliver(d stack.NetworkDispatcher, b []byte) {
	e.stats.rxPackets.Add(1)
	var proto tcpip.NetworkProtocolNumber
	switch header.IPVersion(b) {
	case header.IPv4Version:
		proto = header.IPv4ProtocolNumber
	case header.IPv6Version:
		proto = header.IPv6ProtocolNumber
	default:
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	pkt.NetworkProtocolNumber = proto
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}

// WritePackets implements stack.LinkWriter.
func (e *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if err := e.writePacket(pkt); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return n, &tcpip.ErrClosedForSend{}
			}
			// One bad packet must not stall the ones behind it; TCP
			// retransmits.
			continue
		}
		n++
	}
	return n, nil
}

func (e *linkEndpoint) writePacket(pkt *stack.PacketBuffer) error {
	size := pkt.Size()
	if size > maxGSOSize {
		return errOversized
	}
	bp := e.bufPool.Get().(*[]byte)
	defer e.bufPool.Put(bp)
	b := *bp
	start := 0
	if e.frames != nil {
		e.putVirtioHdr(b[:virtioNetHdrLen], pkt, size)
	} else {
		start = virtioNetHdrLen
	}
	end := virtioNetHdrLen
	for _, s := range pkt.AsSlices() {
		end += copy(b[end:], s)
	}
	e.stats.txPackets.Add(1)
	_, err := e.file.Write(b[start:end])
	return err
}

var errOversized = errors.New("packet larger than 64 KiB")

// putVirtioHdr fills a virtio_net_hdr for pkt. With host GSO, gVisor marks
// every TCP packet (pure ACKs too) as needing its checksum finished, and
// leaves only the pseudo-header sum in place: NEEDS_CSUM must be sent for all
// of them, segmentation only when the payload exceeds one MSS.
func (e *linkEndpoint) putVirtioHdr(h []byte, pkt *stack.PacketBuffer, size int) {
	clear(h)
	gso := pkt.GSOOptions
	if !gso.NeedsCsum && gso.Type == stack.GSONone {
		return
	}
	if gso.NeedsCsum {
		h[0] = virtioNetHdrFNeedsCsum
		binary.NativeEndian.PutUint16(h[6:], gso.L3HdrLen)
		binary.NativeEndian.PutUint16(h[8:], gso.CsumOffset)
	}
	hdrLen := len(pkt.NetworkHeader().Slice()) + len(pkt.TransportHeader().Slice())
	if gso.MSS == 0 || size-hdrLen <= int(gso.MSS) {
		return
	}
	switch gso.Type {
	case stack.GSOTCPv4:
		h[1] = virtioNetHdrGSOTCPv4
	case stack.GSOTCPv6:
		h[1] = virtioNetHdrGSOTCPv6
	default:
		return
	}
	e.stats.txGSO.Add(1)
	binary.NativeEndian.PutUint16(h[2:], uint16(hdrLen))
	binary.NativeEndian.PutUint16(h[4:], gso.MSS)
}

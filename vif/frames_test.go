package vif

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// frame builds a frame of a device with a virtio_net_hdr: the header with
// the given segmentation type and MSS, then pkt.
func frame(gsoType byte, mss uint16, pkt []byte) []byte {
	h := make([]byte, virtioNetHdrLen)
	h[0] = virtioNetHdrFNeedsCsum
	h[1] = gsoType
	binary.NativeEndian.PutUint16(h[4:], mss)
	return append(h, pkt...)
}

func TestFramePacket(t *testing.T) {
	v4 := tcpSegment{src: hostAddr, dst: clusterAddr, flags: header.TCPFlagAck, seq: 1, payload: bytes.Repeat([]byte("x"), 3000)}.build()
	v6 := make([]byte, header.IPv6MinimumSize)
	v6[0] = 6 << 4
	for _, tc := range []struct {
		name  string
		frame []byte
		ok    bool
	}{
		{"no segmentation", frame(virtioNetHdrGSONone, 0, v4), true},
		{"TCPv4 superpacket", frame(virtioNetHdrGSOTCPv4, 1460, v4), true},
		{"TCPv4 superpacket with ECN", frame(virtioNetHdrGSOTCPv4|virtioNetHdrGSOECN, 1460, v4), true},
		{"TCPv6 superpacket", frame(virtioNetHdrGSOTCPv6, 1440, v6), true},
		{"TCPv4 type on an IPv6 packet", frame(virtioNetHdrGSOTCPv4, 1460, v6), false},
		{"TCPv6 type on an IPv4 packet", frame(virtioNetHdrGSOTCPv6, 1460, v4), false},
		{"segmentation type without a packet", frame(virtioNetHdrGSOTCPv4, 1460, nil), false},
		{"UDP segmentation (offload off)", frame(5, 1472, v4), false},
		{"unknown segmentation type", frame(3, 1460, v4), false},
		{"shorter than the header", []byte{0, 0, 0}, false},
		{"header alone", frame(virtioNetHdrGSONone, 0, nil), true},
	} {
		pkt, err := framePacket(tc.frame)
		if tc.ok != (err == nil) {
			t.Errorf("%s: error %v", tc.name, err)
			continue
		}
		if err == nil && !bytes.Equal(pkt, tc.frame[virtioNetHdrLen:]) {
			t.Errorf("%s: packet is not the frame after its header", tc.name)
		}
	}
}

// FuzzFramePacket: no frame panics, and a packet is always what follows
// the header.
func FuzzFramePacket(f *testing.F) {
	f.Add(frame(virtioNetHdrGSOTCPv4, 1460, tcpSegment{src: hostAddr, dst: clusterAddr, flags: header.TCPFlagAck, seq: 1, payload: []byte("data")}.build()))
	f.Add([]byte{})
	f.Add(make([]byte, virtioNetHdrLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt, err := framePacket(b)
		if err == nil && !bytes.Equal(pkt, b[virtioNetHdrLen:]) {
			t.Fatal("packet is not the frame after its header")
		}
	})
}

// recordingRemote is a fakeRemote that keeps what the stack sends.
type recordingRemote struct {
	*fakeRemote
	mu   sync.Mutex
	sent []byte
	got  chan struct{} // a token per Send
}

func (r *recordingRemote) Send(b []byte) error {
	if err := r.fakeRemote.Send(b); err != nil {
		return err
	}
	r.mu.Lock()
	r.sent = append(r.sent, b...)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
	return nil
}

// TestTSOFrameReachesTheFlowWhole: a TCP superpacket from the kernel (a
// frame with TCP segmentation) goes to the stack as one packet, and its
// whole payload reaches the flow.
func TestTSOFrameReachesTheFlowWhole(t *testing.T) {
	checkLeaks(t)
	remotes := make(chan *recordingRemote, 1)
	h := newHarness(t, harnessConfig{vnet: true, open: func(ctx context.Context, _ FlowID) (Remote, error) {
		r := &recordingRemote{fakeRemote: newFakeRemote(ctx), got: make(chan struct{}, 1)}
		remotes <- r
		return r, nil
	}})
	const isn = 1000
	if err := h.dev.inject(tcpSegment{src: hostAddr, dst: clusterAddr, flags: header.TCPFlagSyn, seq: isn}.build()); err != nil {
		t.Fatal(err)
	}
	synAck := h.next(t, wait, func(b []byte) bool {
		p, ok := parseTCP(b)
		return ok && p.tcp.Flags() == header.TCPFlagSyn|header.TCPFlagAck
	})
	p, _ := parseTCP(synAck)
	if err := h.dev.inject(tcpSegment{src: hostAddr, dst: clusterAddr, flags: header.TCPFlagAck, seq: isn + 1, ack: p.tcp.SequenceNumber() + 1}.build()); err != nil {
		t.Fatal(err)
	}
	r := <-remotes
	payload := bytes.Repeat([]byte("0123456789"), 800) // 8,000 bytes: five MSS and more
	super := tcpSegment{src: hostAddr, dst: clusterAddr, flags: header.TCPFlagAck | header.TCPFlagPsh, seq: isn + 1, ack: p.tcp.SequenceNumber() + 1, payload: payload}.build()
	if err := h.dev.injectFrames(frame(virtioNetHdrGSOTCPv4, fakeMTU-40, super)); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(wait)
	for {
		r.mu.Lock()
		got := append([]byte(nil), r.sent...)
		r.mu.Unlock()
		if bytes.Equal(got, payload) {
			break
		}
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("the flow got %d of %d bytes", len(got), len(payload))
		}
	}
	if s := h.vif.Stats(); s.RxPackets != 3 {
		t.Errorf("stack took %d packets, want 3 (SYN, ACK, one superpacket)", s.RxPackets)
	}
}

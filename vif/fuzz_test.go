package vif

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FuzzLinkEndpoint injects arbitrary packets through a fake device into a
// real stack with its forwarders: nothing may panic, every packet the stack
// writes back must be a well-formed IP packet, and closing the VIF must
// leave no goroutine behind. A VIF costs about 0.2 ms, so each input gets
// its own and the outcome depends on the input alone.
//
// The input is a mode byte (see linkMode) and packets, each prefixed with
// its length as two bytes, big-endian; a length past the end takes the
// rest.
func FuzzLinkEndpoint(f *testing.F) {
	for _, s := range linkSeeds() {
		f.Add(byte(s.mode), joinPackets(s.pkts...))
	}
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		runLinkInput(t, linkMode(mode), splitPackets(data))
	})
}

// TestLinkEndpointSeedsLeakNothing runs the fuzzer's seeds and names any
// goroutine that outlives the VIF.
func TestLinkEndpointSeedsLeakNothing(t *testing.T) {
	for _, s := range linkSeeds() {
		t.Run(s.name, func(t *testing.T) {
			checkLeaks(t)
			runLinkInput(t, s.mode, s.pkts)
		})
	}
}

// linkMode selects the device and the Opener for one input.
type linkMode byte

const (
	modeBatch     linkMode = 1 << 0 // BatchSize 128 instead of 1
	modeVnet      linkMode = 1 << 1 // the device has a virtio_net_hdr (TSO frames in, GSO out)
	modeOpenShift          = 2      // bits 2-3: the Opener, see openers
	modeOneByOne  linkMode = 1 << 4 // inject each packet alone instead of all in one batch
)

func (m linkMode) opener() int { return int(m>>modeOpenShift) & 3 }

// Openers by mode: every open fails; every open succeeds with a remote
// side that answers and half-closes; opens alternate between the two; the
// remote side is reset at once.
const (
	openFail = iota
	openAnswer
	openAlternate
	openReset
)

var errRemoteReset = errors.New("remote side reset by the test")

// linkOpener returns an Opener for mode that never blocks.
func linkOpener(mode linkMode) Opener {
	var n atomic.Uint64
	return func(ctx context.Context, _ FlowID) (Remote, error) {
		switch mode.opener() {
		case openFail:
			return nil, errRefused
		case openAlternate:
			if n.Add(1)%2 == 1 {
				return nil, errRefused
			}
		case openReset:
			return &scriptedRemote{err: errRemoteReset}, nil
		}
		return &scriptedRemote{answer: []byte("answer"), err: io.EOF}, nil
	}
}

// scriptedRemote returns answer (if any) and then err from Recv, and
// accepts everything sent to it.
type scriptedRemote struct {
	mu     sync.Mutex
	answer []byte
	err    error
}

func (r *scriptedRemote) Send([]byte) error { return nil }

func (r *scriptedRemote) Recv() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.answer; b != nil {
		r.answer = nil
		return b, nil
	}
	return nil, r.err
}

func (r *scriptedRemote) CloseWrite() error { return nil }
func (r *scriptedRemote) Close(bool)        {}

// runLinkInput runs one input through a fresh VIF and checks what came
// out and that its goroutines ended.
func runLinkInput(t *testing.T, mode linkMode, pkts [][]byte) {
	baseline := runtime.NumGoroutine()
	batch := 1
	if mode&modeBatch != 0 {
		batch = 128
	}
	h := newHarness(t, harnessConfig{batch: batch, vnet: mode&modeVnet != 0, open: linkOpener(mode), udpIdle: time.Second})
	if mode&modeOneByOne != 0 {
		for _, p := range pkts {
			if err := h.dev.inject(p); err != nil {
				t.Fatalf("inject: %v", err)
			}
		}
	} else if err := h.dev.inject(pkts...); err != nil {
		t.Fatalf("inject: %v", err)
	}
	if err := h.close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if s := h.vif.Stats(); s.RxPackets != uint64(len(pkts)) {
		t.Errorf("stack took %d packets, want %d", s.RxPackets, len(pkts))
	}
	for {
		select {
		case b := <-h.out:
			if err := checkOutbound(b, h.vnet); err != nil {
				t.Errorf("stack wrote a bad packet: %v\n%x", err, b)
			}
			continue
		default:
		}
		break
	}
	waitGoroutines(t, baseline)
}

// checkOutbound checks that b, as written to the device, is one IP packet
// whose headers agree with its length.
func checkOutbound(b []byte, vnet bool) error {
	if vnet {
		if len(b) < virtioNetHdrLen {
			return fmt.Errorf("%d bytes: no room for a virtio_net_hdr", len(b))
		}
		b = b[virtioNetHdrLen:]
	}
	switch header.IPVersion(b) {
	case header.IPv4Version:
		if !header.IPv4(b).IsValid(len(b)) || int(header.IPv4(b).TotalLength()) != len(b) {
			return errors.New("invalid IPv4 header")
		}
	case header.IPv6Version:
		if !header.IPv6(b).IsValid(len(b)) || header.IPv6MinimumSize+int(header.IPv6(b).PayloadLength()) != len(b) {
			return errors.New("invalid IPv6 header")
		}
	default:
		return errors.New("not IPv4 or IPv6")
	}
	if len(b) > fakeMTU && !vnet {
		return fmt.Errorf("%d bytes exceed the MTU without GSO", len(b))
	}
	return nil
}

// waitGoroutines fails t unless the number of goroutines is back to
// baseline within a bounded wait.
func waitGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

// splitPackets splits fuzz input into length-prefixed packets.
func splitPackets(data []byte) [][]byte {
	var pkts [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			pkts = append(pkts, data)
			break
		}
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		n = min(n, len(data))
		pkts = append(pkts, data[:n])
		data = data[n:]
	}
	return pkts
}

// joinPackets is the inverse of splitPackets.
func joinPackets(pkts ...[]byte) []byte {
	var b []byte
	for _, p := range pkts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

type linkSeed struct {
	name string
	mode linkMode
	pkts [][]byte
}

func linkSeeds() []linkSeed {
	host6 := netip.MustParseAddrPort("[fd00::1]:40000")
	cluster6 := netip.MustParseAddrPort("[fd00:1::2]:80")
	syn := tcpSegment{src: hostAddr, dst: clusterAddr, flags: header.TCPFlagSyn, seq: 1000}.build()
	ack := func(seq uint32, flags header.TCPFlags, payload string) []byte {
		// The stack's ISN is random; these ACKs exercise the paths for
		// segments that do not match the handshake.
		return tcpSegment{src: hostAddr, dst: clusterAddr, flags: header.TCPFlagAck | flags, seq: seq, ack: 1, payload: []byte(payload)}.build()
	}
	udp := udpDatagram(hostAddr, clusterDNS, []byte("query"))
	syn6 := tcpSegment{src: host6, dst: cluster6, flags: header.TCPFlagSyn, seq: 1}.build()
	udp6 := udpDatagram(host6, netip.AddrPortFrom(cluster6.Addr(), 53), []byte("query"))

	// A UDP datagram in two IPv4 fragments.
	big := udpDatagram(hostAddr, clusterDNS, bytes.Repeat([]byte("f"), 100))
	frag1 := append([]byte(nil), big[:header.IPv4MinimumSize+64]...)
	ip := header.IPv4(frag1)
	ip.SetTotalLength(uint16(len(frag1)))
	ip.SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	frag2 := append(append([]byte(nil), big[:header.IPv4MinimumSize]...), big[header.IPv4MinimumSize+64:]...)
	ip = header.IPv4(frag2)
	ip.SetTotalLength(uint16(len(frag2)))
	ip.SetFlagsFragmentOffset(0, 64)
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())

	blob := make([]byte, 65535)
	for i := range blob {
		blob[i] = byte(i)
	}
	blob4 := append([]byte(nil), syn...)
	header.IPv4(blob4).SetTotalLength(65535)
	blob4 = append(blob4, make([]byte, 65535-len(blob4))...)

	return []linkSeed{
		{"TCP SYN, open fails", linkMode(openFail << modeOpenShift), [][]byte{syn}},
		{"TCP SYN, open succeeds, vnet", modeVnet | modeBatch | linkMode(openAnswer<<modeOpenShift), [][]byte{syn}},
		{"TCP SYN, ACK, data, FIN", modeOneByOne | linkMode(openAnswer<<modeOpenShift), [][]byte{syn, ack(1001, 0, ""), ack(1001, header.TCPFlagPsh, "hello"), ack(1006, header.TCPFlagFin, "")}},
		{"TCP segments in a row", modeVnet | modeBatch | linkMode(openReset<<modeOpenShift), [][]byte{syn, ack(1001, 0, "aaaa"), ack(1005, 0, "bbbb"), ack(1009, header.TCPFlagPsh, "cccc")}},
		{"UDP datagram", linkMode(openAnswer << modeOpenShift), [][]byte{udp}},
		{"UDP datagrams, alternating opens", modeBatch | linkMode(openAlternate<<modeOpenShift), [][]byte{udp, udp6, udp}},
		{"IPv6 TCP SYN", modeVnet | linkMode(openAlternate<<modeOpenShift), [][]byte{syn6, syn6}},
		{"IPv4 fragments", modeBatch, [][]byte{frag1, frag2}},
		{"truncated headers", modeBatch | linkMode(openAnswer<<modeOpenShift), [][]byte{syn[:1], syn[:10], syn[:20], syn[:30], udp[:24], syn6[:39], syn6[:50]}},
		{"zero bytes", 0, [][]byte{{}}},
		{"no packet", modeBatch, nil},
		{"65535-byte blob", modeBatch, [][]byte{blob}},
		{"IPv4 claiming 65535 bytes", modeVnet, [][]byte{blob4}},
	}
}

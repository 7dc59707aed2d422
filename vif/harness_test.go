package vif

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// wait bounds every wait for the stack in these tests.
const wait = 5 * time.Second

var (
	hostAddr    = netip.MustParseAddrPort("198.18.1.1:40000")
	clusterAddr = netip.MustParseAddrPort("198.18.2.2:80")
	clusterDNS  = netip.MustParseAddrPort("198.18.2.2:53")
)

// checkLeaks fails t if goroutines started during the test outlive it.
// Call it before newHarness: cleanups run last-in first-out, so the check
// runs after the harness closed, even when the test failed.
func checkLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// deviceCases are the shapes of device the harness tests run on.
var deviceCases = []struct {
	name  string
	batch int
	vnet  bool
}{
	{"plain batch 1", 1, false},
	{"vnet batch 128", 128, true},
}

// outChecksumOK says whether an outbound packet's checksum must be
// complete: with a virtio_net_hdr, gVisor leaves TCP checksums to the
// kernel.
func (h *harness) outChecksumOK(p parsedTCP) bool {
	return p.csumOK || h.vnet
}

func TestTCPOpenFailureResets(t *testing.T) {
	for _, dc := range deviceCases {
		t.Run(dc.name, func(t *testing.T) {
			checkLeaks(t)
			opened := make(chan FlowID, 1)
			h := newHarness(t, harnessConfig{batch: dc.batch, vnet: dc.vnet, open: func(_ context.Context, id FlowID) (Remote, error) {
				opened <- id
				return nil, errRefused
			}})
			const isn = 1000
			syn := tcpSegment{src: hostAddr, dst: clusterAddr, flags: header.TCPFlagSyn, seq: isn}.build()
			if err := h.dev.inject(syn); err != nil {
				t.Fatal(err)
			}
			rst := h.next(t, wait, func(b []byte) bool {
				p, ok := parseTCP(b)
				return ok && p.src == clusterAddr && p.dst == hostAddr
			})
			p, _ := parseTCP(rst)
			if f := p.tcp.Flags(); f&header.TCPFlagRst == 0 || f&header.TCPFlagSyn != 0 {
				t.Fatalf("answer to the SYN has flags %v, want RST", f)
			}
			if p.tcp.Flags()&header.TCPFlagAck != 0 && p.tcp.AckNumber() != isn+1 {
				t.Errorf("RST acknowledges %d, want %d", p.tcp.AckNumber(), isn+1)
			}
			if !h.outChecksumOK(p) {
				t.Error("RST has a wrong checksum")
			}
			if got, want := <-opened, (FlowID{TCP, hostAddr, clusterAddr}); got != want {
				t.Errorf("Opener got %v, want %v", got, want)
			}
			if err := h.close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if s := h.vif.Stats(); s.TCPFlows != 1 || s.TCPFailed != 1 || s.TCPLive != 0 {
				t.Errorf("stats %+v, want one failed TCP flow", s)
			}
		})
	}
}

func TestTCPOpenSuccessAnswersSYN(t *testing.T) {
	for _, dc := range deviceCases {
		t.Run(dc.name, func(t *testing.T) {
			checkLeaks(t)
			h := newHarness(t, harnessConfig{batch: dc.batch, vnet: dc.vnet, open: func(ctx context.Context, _ FlowID) (Remote, error) {
				return newFakeRemote(ctx), nil
			}})
			const isn = 7777
			syn := tcpSegment{src: hostAddr, dst: clusterAddr, flags: header.TCPFlagSyn, seq: isn}.build()
			if err := h.dev.inject(syn); err != nil {
				t.Fatal(err)
			}
			synAck := h.next(t, wait, func(b []byte) bool {
				p, ok := parseTCP(b)
				return ok && p.src == clusterAddr && p.dst == hostAddr
			})
			p, _ := parseTCP(synAck)
			if f := p.tcp.Flags(); f != header.TCPFlagSyn|header.TCPFlagAck {
				t.Fatalf("answer to the SYN has flags %v, want SYN|ACK", f)
			}
			if p.tcp.AckNumber() != isn+1 {
				t.Errorf("SYN-ACK acknowledges %d, want %d", p.tcp.AckNumber(), isn+1)
			}
			if !h.outChecksumOK(p) {
				t.Error("SYN-ACK has a wrong checksum")
			}
			// Closing with the flow open resets it and waits for it.
			if err := h.close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if s := h.vif.Stats(); s.TCPFlows != 1 || s.TCPFailed != 0 || s.TCPLive != 0 {
				t.Errorf("stats %+v, want one TCP flow, none failed or live", s)
			}
		})
	}
}

func TestUDPOpensFlow(t *testing.T) {
	for _, dc := range deviceCases {
		t.Run(dc.name, func(t *testing.T) {
			checkLeaks(t)
			opened := make(chan FlowID, 1)
			remotes := make(chan *fakeRemote, 1)
			h := newHarness(t, harnessConfig{batch: dc.batch, vnet: dc.vnet, open: func(ctx context.Context, id FlowID) (Remote, error) {
				opened <- id
				r := newFakeRemote(ctx)
				remotes <- r
				return r, nil
			}})
			if err := h.dev.inject(udpDatagram(hostAddr, clusterDNS, []byte("query"))); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-opened:
				if want := (FlowID{UDP, hostAddr, clusterDNS}); got != want {
					t.Fatalf("Opener got %v, want %v", got, want)
				}
			case <-time.After(wait):
				t.Fatal("Opener not called")
			}
			// The cluster's answer reaches the host from the address it
			// sent to.
			r := <-remotes
			select {
			case r.recv <- []byte("answer"):
			case <-time.After(wait):
				t.Fatal("the flow does not read from the remote side")
			}
			b := h.next(t, wait, func(b []byte) bool { _, ok := parseUDP(b); return ok })
			u, _ := parseUDP(b)
			if u.src != clusterDNS || u.dst != hostAddr || !bytes.Equal(u.payload, []byte("answer")) {
				t.Errorf("answer %v->%v %q, want %v->%v %q", u.src, u.dst, u.payload, clusterDNS, hostAddr, "answer")
			}
			if !u.csumOK {
				t.Error("answer has a wrong checksum")
			}
			if err := h.close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if s := h.vif.Stats(); s.UDPFlows != 1 || s.UDPLive != 0 || s.BytesIn != uint64(len("answer")) {
				t.Errorf("stats %+v, want one UDP flow, none live, %d bytes in", s, len("answer"))
			}
		})
	}
}

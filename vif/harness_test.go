package vif

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
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
	{"vnet", 1, true},
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

// A device that stops taking packets must not hold up the stack's senders:
// gVisor sends with endpoint locks held, and a sender stuck on the device
// stalls everyone who wants the lock, gVisor's segment processor included
// (stack.go). The flow's writer must come back for more data while the
// device is full.
func TestFullDeviceDoesNotBlockSenders(t *testing.T) {
	checkLeaks(t)
	remotes := make(chan *fakeRemote, 1)
	dev := newFakeDev(t, 1)
	v, err := newVIF(dev, nil, Config{MTU: fakeMTU, UDPIdleTimeout: time.Second, Log: slog.New(slog.DiscardHandler),
		Open: func(ctx context.Context, _ FlowID) (Remote, error) {
			r := newFakeRemote(ctx)
			remotes <- r
			return r, nil
		}})
	if err != nil {
		dev.peer.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dev.peer.Close() // first: a writer stuck on the full device fails
		v.Close()
	})

	const isn = 4242
	if err := dev.inject(tcpSegment{src: hostAddr, dst: clusterAddr, flags: header.TCPFlagSyn, seq: isn}.build()); err != nil {
		t.Fatal(err)
	}
	dev.peer.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, maxGSOSize)
	var synAck parsedTCP
	for {
		n, err := dev.peer.Read(buf)
		if err != nil {
			t.Fatalf("no SYN-ACK: %v", err)
		}
		if p, ok := parseTCP(buf[:n]); ok && p.tcp.Flags() == header.TCPFlagSyn|header.TCPFlagAck {
			synAck = p
			break
		}
	}
	ack := tcpSegment{src: hostAddr, dst: clusterAddr, flags: header.TCPFlagAck, seq: isn + 1, ack: synAck.tcp.SequenceNumber() + 1}
	if err := dev.inject(ack.build()); err != nil {
		t.Fatal(err)
	}
	var r *fakeRemote
	select {
	case r = <-remotes:
	case <-time.After(wait):
		t.Fatal("the flow did not open")
	}
	send := func(what string) {
		t.Helper()
		select {
		case r.recv <- []byte(what):
		case <-time.After(wait):
			t.Fatalf("the flow's writer did not come back for %s within %v", what, wait)
		}
	}
	send("the first data") // taken once the handshake is done

	// Fill the device: nobody reads its other end any more.
	rc, err := dev.file.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, fakeMTU)
	rc.Write(func(fd uintptr) bool {
		for range 100_000 {
			if _, err := unix.Write(int(fd), junk); err != nil {
				break
			}
		}
		return true
	})
	send("data the stack writes to the full device")
	send("more data")
}

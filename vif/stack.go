package vif

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/qdisc/fifo"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// nicID is the only NIC of the stack.
const nicID tcpip.NICID = 1

// TCP buffer sizes. gVisor's defaults (1 MiB default, 4 MiB max) are sized
// for the Internet; our hop is a local TUN with microsecond RTT behind which
// sits a gRPC stream with its own window, so a larger maximum only helps
// auto-tuning when the manager is far away. Buffers are not preallocated: an
// idle connection costs none of this (tailscale netstack_tcpbuf_default.go).
const (
	tcpRXBufMin = 4 << 10
	tcpRXBufDef = 1 << 20
	tcpRXBufMax = 8 << 20
	tcpTXBufMin = 4 << 10
	tcpTXBufDef = 1 << 20
	tcpTXBufMax = 6 << 20
	// tcpMaxInFlight bounds handshakes waiting for the manager to dial.
	// Each costs a goroutine; beyond it new SYNs are dropped and retried
	// by the client's kernel.
	tcpMaxInFlight = 4096
)

// txQueueLen bounds the packets waiting for the TUN (a NIC's usual
// txqueuelen); beyond it the stack drops, and TCP retransmits.
const txQueueLen = 1000

// newStack builds the gVisor stack around ep. Every option that differs
// from gVisor's default is here, with its reason.
func newStack(ep stack.LinkEndpoint, tcpHandler func(*tcp.ForwarderRequest), udpHandler udp.ForwarderHandler) (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	opts := []struct {
		name string
		opt  tcpip.SettableTransportProtocolOption
	}{
		// SACK is gVisor's default since 2024; set it so it stays on.
		{"SACK", ptr(tcpip.TCPSACKEnabled(true))},
		{"receive buffer", &tcpip.TCPReceiveBufferSizeRangeOption{Min: tcpRXBufMin, Default: tcpRXBufDef, Max: tcpRXBufMax}},
		{"send buffer", &tcpip.TCPSendBufferSizeRangeOption{Min: tcpTXBufMin, Default: tcpTXBufDef, Max: tcpTXBufMax}},
		// Receive-buffer auto-tuning grows the window with the flow
		// instead of advertising the maximum to every connection.
		{"moderate receive buffer", ptr(tcpip.TCPModerateReceiveBufferOption(true))},
	}
	for _, o := range opts {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o.opt); err != nil {
			return nil, fmt.Errorf("set TCP option %s: %s", o.name, err)
		}
	}
	// Packets leave through a queue and its own goroutine, not in the
	// sender's: gVisor sends a SYN-ACK holding the new endpoint's lock, and
	// a TUN write takes long enough (it runs the local program's TCP) for
	// the runtime to give the P away; the client's ACK then finds the lock
	// taken and gVisor's segment processor spins on it, with one P until
	// the runtime preempts it 10 ms later (1 % of connections stalled so).
	qdisc := fifo.New(ep, 1, txQueueLen)
	if err := s.CreateNICWithOptions(nicID, ep, stack.NICOptions{Name: "tether", QDisc: qdisc}); err != nil {
		return nil, fmt.Errorf("create NIC: %s", err)
	}
	// The stack answers for every cluster address routed to the TUN, not
	// for addresses of its own: promiscuous mode accepts packets to any
	// destination and spoofing lets it reply from them.
	if err := s.SetPromiscuousMode(nicID, true); err != nil {
		return nil, fmt.Errorf("set promiscuous mode: %s", err)
	}
	if err := s.SetSpoofing(nicID, true); err != nil {
		return nil, fmt.Errorf("set spoofing: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	// A zero receive window makes the forwarder use the default buffer.
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tcp.NewForwarder(s, 0, tcpMaxInFlight, tcpHandler).HandlePacket)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, udp.NewForwarder(s, udpHandler).HandlePacket)
	ok = true
	return s, nil
}

func ptr[T any](v T) *T { return &v }

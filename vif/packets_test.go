package vif

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Packets as the host's kernel would write them into the TUN, with valid
// lengths and checksums.

// tcpSegment describes one TCP segment to build.
type tcpSegment struct {
	src, dst netip.AddrPort
	flags    header.TCPFlags
	seq, ack uint32
	payload  []byte
}

func (s tcpSegment) build() []byte {
	tcpLen := header.TCPMinimumSize + len(s.payload)
	b, ip := ipHeader(s.src.Addr(), s.dst.Addr(), header.TCPProtocolNumber, tcpLen)
	t := header.TCP(b[len(b)-tcpLen:])
	t.Encode(&header.TCPFields{
		SrcPort:    s.src.Port(),
		DstPort:    s.dst.Port(),
		SeqNum:     s.seq,
		AckNum:     s.ack,
		DataOffset: header.TCPMinimumSize,
		Flags:      s.flags,
		WindowSize: 65535,
	})
	copy(t[header.TCPMinimumSize:], s.payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.src, ip.dst, uint16(tcpLen))
	xsum = checksum.Checksum(s.payload, xsum)
	t.SetChecksum(^t.CalculateChecksum(xsum))
	return b
}

// udpDatagram builds a UDP datagram from src to dst.
func udpDatagram(src, dst netip.AddrPort, payload []byte) []byte {
	udpLen := header.UDPMinimumSize + len(payload)
	b, ip := ipHeader(src.Addr(), dst.Addr(), header.UDPProtocolNumber, udpLen)
	u := header.UDP(b[len(b)-udpLen:])
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(udpLen)})
	copy(u[header.UDPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, ip.src, ip.dst, uint16(udpLen))
	xsum = checksum.Checksum(payload, xsum)
	u.SetChecksum(^u.CalculateChecksum(xsum))
	return b
}

type ipAddrs struct{ src, dst tcpip.Address }

// ipHeader returns a packet with an IPv4 or IPv6 header filled in and
// room for transportLen bytes after it.
func ipHeader(src, dst netip.Addr, proto tcpip.TransportProtocolNumber, transportLen int) ([]byte, ipAddrs) {
	a := ipAddrs{tcpip.AddrFromSlice(src.AsSlice()), tcpip.AddrFromSlice(dst.AsSlice())}
	if src.Is4() {
		b := make([]byte, header.IPv4MinimumSize+transportLen)
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(len(b)),
			TTL:         64,
			Protocol:    uint8(proto),
			SrcAddr:     a.src,
			DstAddr:     a.dst,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		return b, a
	}
	b := make([]byte, header.IPv6MinimumSize+transportLen)
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(transportLen),
		TransportProtocol: proto,
		HopLimit:          64,
		SrcAddr:           a.src,
		DstAddr:           a.dst,
	})
	return b, a
}

// parsedTCP is an outbound IPv4 or IPv6 TCP segment.
type parsedTCP struct {
	src, dst netip.AddrPort
	tcp      header.TCP
	// csumOK says the checksum is complete and right.
	csumOK bool
}

// parseTCP parses b as an IP packet holding a TCP segment.
func parseTCP(b []byte) (parsedTCP, bool) {
	var (
		src, dst tcpip.Address
		payload  []byte
	)
	switch header.IPVersion(b) {
	case header.IPv4Version:
		ip := header.IPv4(b)
		if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.TCPProtocolNumber {
			return parsedTCP{}, false
		}
		src, dst, payload = ip.SourceAddress(), ip.DestinationAddress(), ip.Payload()
	case header.IPv6Version:
		ip := header.IPv6(b)
		if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.TCPProtocolNumber {
			return parsedTCP{}, false
		}
		src, dst, payload = ip.SourceAddress(), ip.DestinationAddress(), ip.Payload()
	default:
		return parsedTCP{}, false
	}
	if len(payload) < header.TCPMinimumSize {
		return parsedTCP{}, false
	}
	t := header.TCP(payload)
	if int(t.DataOffset()) < header.TCPMinimumSize || int(t.DataOffset()) > len(payload) {
		return parsedTCP{}, false
	}
	data := payload[t.DataOffset():]
	return parsedTCP{
		src:    netip.AddrPortFrom(addrFrom(src), t.SourcePort()),
		dst:    netip.AddrPortFrom(addrFrom(dst), t.DestinationPort()),
		tcp:    t,
		csumOK: t.IsChecksumValid(src, dst, checksum.Checksum(data, 0), uint16(len(data))),
	}, true
}

// parsedUDP is an outbound IPv4 UDP datagram.
type parsedUDP struct {
	src, dst netip.AddrPort
	payload  []byte
	csumOK   bool
}

func parseUDP(b []byte) (parsedUDP, bool) {
	ip := header.IPv4(b)
	if header.IPVersion(b) != header.IPv4Version || !ip.IsValid(len(b)) || ip.TransportProtocol() != header.UDPProtocolNumber {
		return parsedUDP{}, false
	}
	u := header.UDP(ip.Payload())
	if len(u) < header.UDPMinimumSize || int(u.Length()) != len(u) {
		return parsedUDP{}, false
	}
	payload := u.Payload()
	return parsedUDP{
		src:     netip.AddrPortFrom(addrFrom(ip.SourceAddress()), u.SourcePort()),
		dst:     netip.AddrPortFrom(addrFrom(ip.DestinationAddress()), u.DestinationPort()),
		payload: payload,
		csumOK:  u.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(payload, 0)),
	}, true
}

package daemon

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	pbm "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// The daemon answers DNS for the cluster's domains at an address routed
// into the VIF, resolving through the traffic manager. A query reaches it as
// any UDP flow does (so it is never activity); the session's opener hands
// flows to that address to a dnsFlow instead of the manager.

// dnsTTL is what answers say; short, since the cluster's records move.
const dnsTTL = 5

// dnsQueryTimeout bounds one lookup through the manager.
const dnsQueryTimeout = 3 * time.Second

// defaultDNSAddress is the last usable address of the first IPv4 subnet:
// routed into the VIF already, and rarely assigned in a cluster's ranges.
func defaultDNSAddress(subnets []netip.Prefix) (netip.AddrPort, bool) {
	for _, p := range subnets {
		if !p.Addr().Is4() || p.Bits() > 30 {
			continue
		}
		a := p.Masked().Addr().As4()
		host := ^uint32(0) >> p.Bits()
		v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | (host - 1)
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 53), true
	}
	return netip.AddrPort{}, false
}

// dnsResolver answers queries for domains through the manager.
type dnsResolver struct {
	domains []string
	resolve func(ctx context.Context, name string, family uint32) (*pbm.ResolveResponse, error)
}

// answer builds the reply to one query; nil drops what is not a query.
func (r *dnsResolver) answer(ctx context.Context, query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil
	}
	qs, err := p.AllQuestions()
	reply := func(rc dnsmessage.RCode, q *dnsmessage.Question, addrs []string) []byte {
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode,
			RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rc})
		b.EnableCompression()
		if q == nil {
			out, _ := b.Finish()
			return out
		}
		b.StartQuestions()
		b.Question(*q)
		b.StartAnswers()
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: dnsTTL}
		for _, s := range addrs {
			a, err := netip.ParseAddr(s)
			switch {
			case err != nil:
			case a.Is4() && q.Type == dnsmessage.TypeA:
				b.AResource(rh, dnsmessage.AResource{A: a.As4()})
			case a.Is6() && q.Type == dnsmessage.TypeAAAA:
				b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
		}
		out, _ := b.Finish()
		return out
	}
	if err != nil || len(qs) != 1 || h.OpCode != 0 {
		return reply(dnsmessage.RCodeFormatError, nil, nil)
	}
	q := qs[0]
	if q.Class != dnsmessage.ClassINET || !wire.InDomains(q.Name.String(), r.domains) {
		// Not ours: the host's resolver only sends the cluster's domains.
		return reply(dnsmessage.RCodeRefused, &q, nil)
	}
	var family uint32
	switch q.Type {
	case dnsmessage.TypeA:
		family = 4
	case dnsmessage.TypeAAAA:
		family = 6
	default:
		return reply(dnsmessage.RCodeSuccess, &q, nil) // no such record type here
	}
	ctx, cancel := context.WithTimeout(ctx, dnsQueryTimeout)
	defer cancel()
	resp, err := r.resolve(ctx, strings.ToLower(q.Name.String()), family)
	switch {
	case err != nil:
		return reply(dnsmessage.RCodeServerFailure, &q, nil)
	case resp.NotFound:
		return reply(dnsmessage.RCodeNameError, &q, nil)
	}
	return reply(dnsmessage.RCodeSuccess, &q, resp.Addresses)
}

// dnsFlow is the local end of a UDP flow to the DNS address: each datagram
// sent is a query, each received one its answer. It implements vif.Remote.
type dnsFlow struct {
	r      *dnsResolver
	ctx    context.Context
	cancel context.CancelFunc
	out    chan []byte
}

func newDNSFlow(ctx context.Context, r *dnsResolver) *dnsFlow {
	ctx, cancel := context.WithCancel(ctx)
	return &dnsFlow{r: r, ctx: ctx, cancel: cancel, out: make(chan []byte, 16)}
}

func (f *dnsFlow) Send(b []byte) error {
	if ans := f.r.answer(f.ctx, b); ans != nil {
		select {
		case f.out <- ans:
		default: // the asker is not reading; it will retry
		}
	}
	return nil
}

func (f *dnsFlow) Recv() ([]byte, error) {
	select {
	case b := <-f.out:
		return b, nil
	case <-f.ctx.Done():
		return nil, io.EOF
	}
}

func (f *dnsFlow) CloseWrite() error { return nil }
func (f *dnsFlow) Close(bool)        { f.cancel() }

package tunnel_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tether-dev/tether/manager"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
)

// freezingProxy forwards one TCP connection on loopback until freeze,
// after which it forwards nothing either way and keeps both sockets open:
// the manager sees a client that stopped answering without a FIN or RST,
// as when a laptop loses its network.
type freezingProxy struct {
	ln     net.Listener
	frozen chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezingProxy(t *testing.T, target string) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln, frozen: make(chan struct{})}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Go(func() { p.pipe(up, c) })
			p.wg.Go(func() { p.pipe(c, up) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.freeze()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *freezingProxy) freeze() { p.once.Do(func() { close(p.frozen) }) }

// pipe copies until frozen; what it read when the freeze came is dropped.
func (p *freezingProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			return
		default:
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// A client that stops answering has its streams ended by the manager
// within the keepalive time and timeout, while a client that answers keeps
// its flow across many of the manager's pings.
func TestKeepaliveEndsStreamsOfDeadClient(t *testing.T) {
	// A second to answer a ping: enough for a client on a loaded machine.
	ka := tunnel.Keepalive{Time: tunnel.MinKeepaliveTime, Timeout: time.Second}
	mgr, err := manager.New(manager.Config{Subnets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(tunnel.ServerOptions(ka)...)
	mgr.Register(srv)
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	defer func() { mgr.Shutdown(); srv.Stop(); <-served }()
	proxy := newFreezingProxy(t, ln.Addr().String())
	cc, err := grpc.NewClient(proxy.ln.Addr().String(), tunnel.DialOptions(nil)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	resp, err := pb.NewManagerClient(cc).Arrive(context.Background(), &pb.ArriveRequest{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), manager.MDSession, resp.SessionId, manager.MDSecret, resp.SessionSecret)
	client := tunnel.NewClient(cc, 2*time.Second)
	defer client.Close()

	dst, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := dst.Accept(); err == nil {
			accepted <- c
		}
	}()
	f, err := client.Open(ctx, pb.Protocol_TCP, netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort(dst.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(true)
	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the manager never dialed the destination")
	}
	defer c.Close()

	// Alive: the flow outlasts several keepalive periods with no data.
	quiet := 3 * (ka.Time + ka.Timeout)
	c.SetReadDeadline(time.Now().Add(quiet))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the flow of a client that answers pings ended: %v", err)
	}
	if err := f.Send([]byte("x")); err != nil {
		t.Fatalf("after %v of quiet: %v", quiet, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("after %v of quiet the flow carries nothing: %v", quiet, err)
	}

	// Dead: the manager's ping goes unanswered, so it closes the
	// connection, which ends the flow and resets the destination.
	proxy.freeze()
	start := time.Now()
	limit := ka.Time + ka.Timeout + 2*time.Second // slack for a loaded machine
	c.SetReadDeadline(start.Add(limit + time.Second))
	_, err = c.Read(make([]byte, 1))
	took := time.Since(start)
	if errors.Is(err, os.ErrDeadlineExceeded) || err == nil {
		t.Fatalf("the flow of a frozen client still runs after %v (read %v)", took, err)
	}
	if took > limit {
		t.Fatalf("the manager ended the frozen client's flow after %v, want within %v", took, limit)
	}
	t.Logf("flow of the frozen client ended after %v (%v)", took.Round(time.Millisecond), err)
}

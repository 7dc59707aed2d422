package tunnel_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/tunnel"
)

// A destination that never answers a SYN fails the open after the
// manager's dial timeout, well before the daemon's open timeout, and as
// unreachable.
func TestDialTimeout(t *testing.T) {
	h := newHarnessTimeouts(t, time.Second, 10*time.Second)
	dst := blackHole(t)
	start := time.Now()
	_, err := h.open(t, pb.Protocol_TCP, dst)
	took := time.Since(start)
	var oe *tunnel.OpenError
	if !errors.As(err, &oe) || oe.Status != pb.OpenStatus_OPEN_UNREACHABLE {
		t.Fatalf("got %v, want %v", err, pb.OpenStatus_OPEN_UNREACHABLE)
	}
	if !strings.Contains(oe.Msg, "1s") {
		t.Errorf("the error %q does not name the dial timeout", oe.Msg)
	}
	if took < 900*time.Millisecond || took > 3*time.Second {
		t.Errorf("the open failed after %v, want about the 1 s dial timeout", took)
	}
	// The manager serves the next flow: the timeout ended only that dial.
	if _, err := h.open(t, pb.Protocol_TCP, echoServer(t)); err != nil {
		t.Fatalf("next flow: %v", err)
	}
}

// blackHole is a loopback address whose SYNs Linux drops: a listener with a
// backlog of 0 whose one queued connection is never accepted.
func blackHole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4(sa.(*syscall.SockaddrInet4).Addr), uint16(sa.(*syscall.SockaddrInet4).Port)).String()
	filler, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
		c.Close()
		t.Skip("this kernel does not drop SYNs to a full accept queue")
	}
	return addr
}

package vif

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// fakeDev is a tun.Device backed by memory, so the VIF runs in-process and
// without root. Inbound, Read returns the batches that inject hands it.
// Outbound, the link endpoint writes to File, one end of a SOCK_SEQPACKET
// socket pair that keeps packet boundaries; the test reads the other end.
type fakeDev struct {
	batch int
	file  *os.File // the endpoint's end
	peer  *os.File // the test's end

	in     chan *fakeBatch
	events chan tun.Event
	closed chan struct{}

	// cur and pending belong to the goroutine that calls Read.
	cur     *fakeBatch
	pending [][]byte

	closeOnce sync.Once
}

// fakeBatch is what one inject hands to Read; done is closed once the
// reader came back for more, that is, once the stack had every packet.
// frames: pkts are whole frames, virtio_net_hdr included (injectFrames).
type fakeBatch struct {
	pkts   [][]byte
	frames bool
	done   chan struct{}
}

var _ tun.Device = (*fakeDev)(nil)

// fakeMTU is the MTU of every fake device.
const fakeMTU = 1500

func newFakeDev(t testing.TB, batch int) *fakeDev {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	// Non-blocking descriptors go to the runtime's poller, so Close ends a
	// Read or Write blocked on them.
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
			t.Fatalf("set non-blocking: %v", err)
		}
	}
	return &fakeDev{
		batch:  batch,
		file:   os.NewFile(uintptr(fds[0]), "fakedev"),
		peer:   os.NewFile(uintptr(fds[1]), "fakedev-peer"),
		in:     make(chan *fakeBatch),
		events: make(chan tun.Event),
		closed: make(chan struct{}),
	}
}

// inject hands pkts to the reader as one batch (split over several Reads
// when it exceeds the batch size) and waits until the stack has taken all
// of them. It fails once the device is closed.
func (d *fakeDev) inject(pkts ...[]byte) error { return d.injectBatch(&fakeBatch{pkts: pkts}) }

// injectFrames is inject for frames of a device with a virtio_net_hdr,
// header included; only the harness's frame reader takes them.
func (d *fakeDev) injectFrames(frames ...[]byte) error {
	return d.injectBatch(&fakeBatch{pkts: frames, frames: true})
}

func (d *fakeDev) injectBatch(b *fakeBatch) error {
	b.done = make(chan struct{})
	select {
	case d.in <- b:
	case <-d.closed:
		return os.ErrClosed
	}
	select {
	case <-b.done:
		return nil
	case <-d.closed:
		return os.ErrClosed
	}
}

// next returns the next injected packet (or frame), and whether it is a
// whole frame.
func (d *fakeDev) next() ([]byte, bool, error) {
	for len(d.pending) == 0 {
		if d.cur != nil {
			close(d.cur.done)
			d.cur = nil
		}
		select {
		case b := <-d.in:
			d.cur, d.pending = b, b.pkts
		case <-d.closed:
			return nil, false, os.ErrClosed
		}
	}
	p := d.pending[0]
	d.pending = d.pending[1:]
	return p, d.cur.frames, nil
}

// Read implements tun.Device. Packets longer than a buffer are truncated,
// as a too short read of a TUN truncates them.
func (d *fakeDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n < len(bufs) && (n == 0 || len(d.pending) > 0) {
		p, _, err := d.next()
		if err != nil {
			return n, err
		}
		sizes[n] = copy(bufs[n][offset:], p)
		n++
	}
	return n, nil
}

// fakeFrames is the inbound side of a fake device with a virtio_net_hdr:
// each Read returns the next injected packet behind a zero header (no
// segmentation, checksum complete), or an injected frame as it is.
type fakeFrames struct{ d *fakeDev }

func (f fakeFrames) Read(b []byte) (int, error) {
	p, frame, err := f.d.next()
	if err != nil {
		return 0, err
	}
	if frame {
		return copy(b, p), nil
	}
	clear(b[:virtioNetHdrLen])
	return virtioNetHdrLen + copy(b[virtioNetHdrLen:], p), nil
}

// Write implements tun.Device; the link endpoint writes to File instead.
func (d *fakeDev) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if _, err := d.file.Write(b[offset:]); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

func (d *fakeDev) File() *os.File           { return d.file }
func (d *fakeDev) MTU() (int, error)        { return fakeMTU, nil }
func (d *fakeDev) Name() (string, error)    { return "fake0", nil }
func (d *fakeDev) Events() <-chan tun.Event { return d.events }
func (d *fakeDev) BatchSize() int           { return d.batch }

// Close implements tun.Device. It is idempotent; the test's end of the
// socket pair stays open until the test's cleanup.
func (d *fakeDev) Close() error {
	var err error
	d.closeOnce.Do(func() {
		close(d.closed)
		close(d.events)
		err = d.file.Close()
	})
	return err
}

// harness is a VIF around a fake device. Outbound packets are collected in
// out by a reader goroutine; they keep the virtio_net_hdr when vnet is set.
type harness struct {
	dev  *fakeDev
	vif  *VIF
	vnet bool
	out  chan []byte

	readerDone chan struct{}
}

type harnessConfig struct {
	batch   int  // 0 means 1
	vnet    bool // the endpoint writes a virtio_net_hdr before each packet
	open    Opener
	udpIdle time.Duration
}

// newHarness builds a VIF around a fake device. Closing it (also done by
// t.Cleanup) closes the VIF and waits for the reader of outbound packets.
func newHarness(t testing.TB, hc harnessConfig) *harness {
	t.Helper()
	if hc.batch == 0 {
		hc.batch = 1
	}
	if hc.udpIdle == 0 {
		hc.udpIdle = time.Second
	}
	dev := newFakeDev(t, hc.batch)
	var frames io.Reader
	if hc.vnet {
		frames = fakeFrames{dev}
	}
	v, err := newVIF(dev, frames, Config{
		MTU:            fakeMTU,
		Open:           hc.open,
		UDPIdleTimeout: hc.udpIdle,
		Log:            slog.New(slog.DiscardHandler),
	})
	if err != nil {
		dev.peer.Close()
		t.Fatalf("newVIF: %v", err)
	}
	h := &harness{dev: dev, vif: v, vnet: hc.vnet, out: make(chan []byte, 64), readerDone: make(chan struct{})}
	go h.readOut()
	t.Cleanup(func() { h.close() })
	return h
}

// readOut moves what the stack wrote into out, dropping packets nobody
// waits for so that the stack never blocks on the socket.
func (h *harness) readOut() {
	defer close(h.readerDone)
	buf := make([]byte, virtioNetHdrLen+maxGSOSize)
	for {
		n, err := h.dev.peer.Read(buf)
		if err != nil {
			return
		}
		select {
		case h.out <- append([]byte(nil), buf[:n]...):
		default:
		}
	}
}

// close closes the VIF, then the test's end of the socket pair, and waits
// for readOut. It is idempotent.
func (h *harness) close() error {
	err := h.vif.Close()
	h.dev.peer.Close()
	<-h.readerDone
	return err
}

// next returns the next outbound IP packet that match accepts, without
// its virtio_net_hdr, or fails the test after timeout.
func (h *harness) next(t testing.TB, timeout time.Duration, match func([]byte) bool) []byte {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case b := <-h.out:
			if h.vnet {
				b = b[virtioNetHdrLen:]
			}
			if match(b) {
				return b
			}
		case <-deadline:
			t.Fatalf("no matching packet from the stack within %v", timeout)
			return nil
		}
	}
}

// fakeRemote is an in-memory cluster side. It swallows what is sent;
// Recv returns what the test queues on recv, then io.EOF once recv is
// closed, or errClosed once the flow is closed or its context ends.
type fakeRemote struct {
	ctx    context.Context
	recv   chan []byte
	closed chan struct{}
	once   sync.Once
}

func newFakeRemote(ctx context.Context) *fakeRemote {
	return &fakeRemote{ctx: ctx, recv: make(chan []byte), closed: make(chan struct{})}
}

func (r *fakeRemote) Send([]byte) error {
	select {
	case <-r.closed:
		return errClosed
	default:
		return nil
	}
}

func (r *fakeRemote) Recv() ([]byte, error) {
	select {
	case b, ok := <-r.recv:
		if !ok {
			return nil, io.EOF
		}
		return b, nil
	case <-r.closed:
		return nil, errClosed
	case <-r.ctx.Done():
		return nil, errClosed
	}
}

func (r *fakeRemote) CloseWrite() error { return nil }

func (r *fakeRemote) Close(bool) { r.once.Do(func() { close(r.closed) }) }

var errRefused = errors.New("refused by the test")

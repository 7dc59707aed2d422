package vif

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// createTUN creates the device with a virtio-net header (TSO in, GSO out)
// and returns the file its frames are read from (see linkEndpoint). Where
// the kernel refuses IFF_VNET_HDR or the TCP offloads (gVisor's runsc, some
// containers), wireguard-go's CreateTUN fails without a fallback; we then
// open a plain IFF_TUN device, without frames: slower, but it works.
func createTUN(name string, mtu int) (tun.Device, io.Reader, error) {
	dev, err := tun.CreateTUN(name, mtu)
	if err == nil && dev.BatchSize() > 1 {
		if err := tcpOffloadsOnly(dev.File()); err != nil {
			dev.Close()
			return nil, nil, err
		}
		return dev, dev.File(), nil
	}
	if err == nil {
		return dev, nil, nil
	}
	dev, ferr := createPlainTUN(name, mtu)
	if ferr != nil {
		return nil, nil, fmt.Errorf("%w (without virtio-net header: %w)", err, ferr)
	}
	return dev, nil, nil
}

// tcpOffloadsOnly leaves the device TCP segmentation offload and checksum
// offload, and takes away the UDP segmentation offload that CreateTUN adds
// where the kernel has it: a UDP superpacket would have to be split into
// datagrams before the stack, and the kernel splits it for us instead.
func tcpOffloadsOnly(f *os.File) error {
	rc, err := f.SyscallConn() // not Fd, which makes the file blocking
	if err != nil {
		return err
	}
	var ierr error
	err = rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6)
	})
	if err == nil {
		err = ierr
	}
	if err != nil {
		return fmt.Errorf("TUNSETOFFLOAD (TCP only): %w", err)
	}
	return nil
}

func createPlainTUN(name string, mtu int) (tun.Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return tun.CreateTUNFromFile(os.NewFile(uintptr(fd), "/dev/net/tun"), mtu)
}

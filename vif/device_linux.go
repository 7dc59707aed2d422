package vif

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// createTUN creates the device with a virtio-net header (batched reads, TSO
// in, GSO out). Where the kernel refuses IFF_VNET_HDR or the TCP offloads
// (gVisor's runsc, some containers), wireguard-go's CreateTUN fails without
// a fallback; we then open a plain IFF_TUN device: slower, but it works.
func createTUN(name string, mtu int) (tun.Device, bool, error) {
	dev, err := tun.CreateTUN(name, mtu)
	if err == nil {
		return dev, dev.BatchSize() > 1, nil
	}
	dev, ferr := createPlainTUN(name, mtu)
	if ferr != nil {
		return nil, false, fmt.Errorf("%w (without virtio-net header: %w)", err, ferr)
	}
	return dev, false, nil
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

//go:build !linux

package vif

import (
	"io"

	"golang.zx2c4.com/wireguard/tun"
)

// createTUN creates the device. Only Linux has the virtio-net header, so
// there are no frames to read (see linkEndpoint).
func createTUN(name string, mtu int) (tun.Device, io.Reader, error) {
	dev, err := tun.CreateTUN(name, mtu)
	return dev, nil, err
}

//go:build !linux

package vif

import "golang.zx2c4.com/wireguard/tun"

// createTUN creates the device. Only Linux has the virtio-net header.
func createTUN(name string, mtu int) (tun.Device, bool, error) {
	dev, err := tun.CreateTUN(name, mtu)
	return dev, false, err
}

// Package vif is the daemon's virtual interface: a TUN device whose packets
// are handled by an in-process gVisor network stack. Every new TCP connection
// and UDP 5-tuple that the host routes into the TUN becomes a flow, opened
// through an Opener that the caller supplies; vif knows nothing of how flows
// reach the cluster.
//
// Lifecycle: New creates the device and the stack and starts the packet
// reader; Close (idempotent) resets every flow, removes the stack and closes
// the device, waiting for all goroutines it started.
//
// Packet path: the TUN is opened with a virtio-net header when the kernel
// allows it. Reads then return the kernel's TSO superpackets whole, one
// frame per read, and hand them to the stack as they are; writes pass gVisor's
// GSO superpackets (up to 64 KiB) straight to the kernel with a
// virtio_net_hdr asking it to segment and checksum. See endpoint.go.
// Outbound packets wait in gVisor's fifo queueing discipline for one writer
// goroutine (stack.go says why), and flows run on kept worker goroutines
// (workers.go).
package vif

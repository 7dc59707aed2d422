// Package tunnel carries flows over gRPC between the root daemon (Client)
// and the traffic manager (Server). It knows nothing of TUN devices or
// gVisor.
//
// A flow runs on a Manager.Tunnel stream, alone: the daemon's first frame
// names the destination, the manager dials it and answers with an Opened
// frame, then both send data frames. HTTP/2 stream flow control bounds
// what each flow buffers, so a slow reader holds back its own writer and
// nobody else. A TCP flow that ends cleanly frees its stream for the
// daemon's next flow, which saves the set-up of a stream and of the
// manager's handler on every short connection (docs/architecture.md, "Multiplexing").
//
// Close rules:
//   - daemon half-close: a frame with control EOF (or CloseSend, which also
//     makes the flow the stream's last);
//   - manager half-close: a frame with control EOF;
//   - daemon reset: the daemon cancels the stream;
//   - manager reset: the handler returns an error status;
//   - a clean end: both half-closes, then, once the manager has written
//     everything to the destination, a DONE frame (the stream waits for
//     the next flow's open frame) or, after CloseSend, the handler's OK.
//     The daemon waits for either before it reuses or cancels the stream,
//     so no byte in flight is lost;
//   - a refused open (an Opened frame that is not OK) also leaves the
//     stream for the next flow; a UDP flow ends its stream.
//
// Intercepted (inbound) flows use AgentTunnel and InboundTunnel streams,
// one flow each, which ends with CloseSend and the handler's OK.
package tunnel

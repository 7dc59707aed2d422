// Package tunnel carries flows over gRPC between the root daemon (Client)
// and the traffic manager (Server). It knows nothing of TUN devices or
// gVisor.
//
// One flow is one Manager.Tunnel stream: the daemon's first frame names
// the destination, the manager dials it and answers with an Opened frame,
// then both send data frames. HTTP/2 stream flow control bounds what each
// flow buffers, so a slow reader holds back its own writer and nobody
// else. A stream per flow was chosen over many flows per stream by
// measurement (README, "Multiplexing").
//
// Close rules:
//   - daemon half-close: CloseSend on the stream;
//   - manager half-close: a frame with control EOF;
//   - daemon reset: the daemon cancels the stream;
//   - manager reset: the handler returns an error status;
//   - a clean end: both half-closes, then the handler returns OK once it has
//     written everything to the destination. The daemon waits for that OK
//     before it cancels, so no byte in flight is lost.
package tunnel

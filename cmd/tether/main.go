// Command tether reaches a cluster network from a laptop. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc/status"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		// One line, without gRPC's "rpc error: code = ... desc =" wrapping.
		if st, ok := status.FromError(err); ok {
			err = fmt.Errorf("%s", st.Message())
		}
		fmt.Fprintln(os.Stderr, "tether:", err)
		os.Exit(1)
	}
}

// Command demo shows Tether in a lab of network namespaces and removes
// everything it built, also on failure and Ctrl-C. By default it tells the
// story of two developers sharing a workload (internal/story, `make demo`);
// with -vif it shows one curl from a laptop through the VIF (`make
// demo-vif`). It needs root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tether-dev/tether/internal/story"
)

func main() {
	bin := flag.String("tether", "bin/tether", "the tether binary to run")
	vif := flag.Bool("vif", false, "the VIF-only demo: one curl through the VIF")
	flag.Parse()
	// The signal stays caught until the end, so a second Ctrl-C does not
	// interrupt the clean-up either.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if *vif {
		err = runVIF(ctx, *bin)
	} else {
		err = story.Run(ctx, story.Options{Tether: *bin, Out: os.Stdout})
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

package main

import (
	"context"
	"log/slog"
	"os"
	"runtime"

	"github.com/tether-dev/tether/internal/procs"
)

// setMaxProcs applies --max-procs unless GOMAXPROCS is set in the
// environment (which wins, as with any Go program): n Ps, or with 0 as
// many as the load keeps busy (procs.Adapt), until ctx ends.
func setMaxProcs(ctx context.Context, n int, log *slog.Logger) {
	switch {
	case os.Getenv("GOMAXPROCS") != "":
	case n <= 0:
		go procs.Adapt(ctx, log)
	default:
		runtime.GOMAXPROCS(n)
		log.Debug("GOMAXPROCS set", "max_procs", n)
	}
}

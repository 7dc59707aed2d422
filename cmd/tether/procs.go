package main

import (
	"log/slog"
	"os"
	"runtime"
)

// setMaxProcs applies --max-procs unless GOMAXPROCS is set in the
// environment (which wins, as with any Go program); 0 keeps Go's default
// of one per CPU.
func setMaxProcs(n int, log *slog.Logger) {
	if n <= 0 || os.Getenv("GOMAXPROCS") != "" {
		return
	}
	runtime.GOMAXPROCS(n)
	log.Debug("GOMAXPROCS set", "max_procs", n)
}

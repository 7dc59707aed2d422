package kubelab

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockFile is the machine-wide lock of the Kubernetes binaries this repo
// runs: a test cluster's names and addresses are fixed, and its teardown
// check counts every etcd and kube-apiserver on the machine, so the test
// packages of one `go test ./...` that run a cluster or an API server
// (internal/apitest) take turns instead of failing each other.
const lockFile = "/tmp/tether-kubelab.lock"

// LockMachine waits until no other process of this repo runs a cluster or
// an API server, for as long as ctx allows, and returns the unlock. The
// kernel drops the lock when the process exits, however it exits.
func LockMachine(ctx context.Context) (unlock func(), err error) {
	f, err := os.OpenFile(lockFile, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("kubelab: lock: %w", err)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if err != syscall.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("kubelab: lock %s: %w", lockFile, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("kubelab: another test cluster or API server of this repo still runs (lock %s): %w", lockFile, ctx.Err())
		case <-tick.C:
		}
	}
}

package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` mounts named namespaces.
const netnsDir = "/run/netns/"

// Available returns nil when the lab can be built here: running as root, `ip` in PATH and
// /dev/net/tun present. Otherwise the error says what is missing.
func Available() error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("not running as root"))
	}
	if _, err := exec.LookPath("ip"); err != nil {
		errs = append(errs, errors.New("iproute2 `ip` not in PATH"))
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		errs = append(errs, errors.New("/dev/net/tun missing"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("netlab unavailable: %w", errors.Join(errs...))
	}
	return nil
}

// Do runs fn on a locked OS thread switched into namespace ns. Sockets created inside fn stay
// in ns afterwards. fn runs on a goroutine of its own and must not call runtime.Goexit (so no
// t.FailNow inside); a panic in fn is re-raised in the caller.
//
// The thread goes back to the original namespace afterwards. If that fails the thread stays
// locked, so the runtime discards it when the goroutine ends and no other goroutine ever runs
// in the wrong namespace.
func (l *Lab) Do(ns string, fn func() error) error {
	target, err := unix.Open(netnsDir+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netlab: open namespace %s: %w", ns, err)
	}
	defer unix.Close(target)

	type result struct {
		err      error
		panicked bool
		panicVal any
	}
	res := make(chan result, 1)
	go func() {
		// Locked for good unless the thread is back in its namespace: a goroutine that ends
		// locked takes its thread with it.
		runtime.LockOSThread()
		r := result{err: errors.New("netlab: Do: fn called runtime.Goexit")}
		defer func() { res <- r }()

		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			r.err = fmt.Errorf("netlab: open current namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			r.err = fmt.Errorf("netlab: enter namespace %s: %w", ns, err)
			runtime.UnlockOSThread() // nothing changed
			return
		}
		defer func() {
			if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
				r.err = errors.Join(r.err, fmt.Errorf("netlab: leave namespace %s: %w", ns, err))
				return
			}
			runtime.UnlockOSThread()
		}()
		defer func() {
			if v := recover(); v != nil {
				r.panicked, r.panicVal = true, v
			}
		}()
		r.err = fn()
	}()
	r := <-res
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}

// newProcessGroup makes a child lead a process group of its own.
func newProcessGroup() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// killGroup sends sig to the process group led by p.
func killGroup(p *os.Process, sig syscall.Signal) error {
	if p == nil {
		return os.ErrProcessDone
	}
	return syscall.Kill(-p.Pid, sig)
}

//go:build unix

package main

import (
	"os"
	"syscall"
)

// detached puts a daemon that connect starts in a session of its own: no
// controlling terminal, no signals meant for the CLI's process group.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// isRoot reports whether this process may run the daemon.
func isRoot() bool { return os.Geteuid() == 0 }

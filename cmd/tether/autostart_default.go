//go:build !unix

package main

import "syscall"

// detached: not implemented here (Windows); the daemon starts as a plain
// child process that outlives the CLI.
func detached() *syscall.SysProcAttr { return nil }

// isRoot cannot tell here; the daemon itself fails if it lacks rights.
func isRoot() bool { return true }

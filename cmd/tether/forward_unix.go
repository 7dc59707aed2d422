//go:build unix

package main

import (
	"errors"
	"os/exec"
	"syscall"
)

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// runAs makes cmd (detached) run as uid, gid and the supplementary groups:
// `sudo tether connect` starts the forwarder as the user who ran sudo,
// with the groups login gives them (none of root's: setgroups replaces
// them all).
func runAs(cmd *exec.Cmd, uid, gid int, groups []int) {
	gs := make([]uint32, len(groups))
	for i, g := range groups {
		gs[i] = uint32(g)
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: gs}
}

// terminate asks the forwarder to stop as SIGTERM does: it closes its
// socket and port-forward first.
func terminate(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }

//go:build unix

package main

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

func dirOwnedBy(dir string, uid int) bool {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == uid
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// runAs makes cmd (detached) run as uid and gid: `sudo tether connect`
// starts the forwarder as the user who ran sudo.
func runAs(cmd *exec.Cmd, uid, gid int) {
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// terminate asks the forwarder to stop as SIGTERM does: it closes its
// socket and port-forward first.
func terminate(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }

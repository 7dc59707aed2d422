//go:build !unix

package main

import (
	"os"
	"os/exec"
)

func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	p.Release()
	return true
}

// runAs is not implemented here: there is no sudo user to become.
func runAs(*exec.Cmd, int, int, []int) {}

// terminate ends the forwarder; Windows has no SIGTERM to ask with.
func terminate(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

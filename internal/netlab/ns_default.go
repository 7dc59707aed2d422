//go:build !linux

package netlab

import (
	"errors"
	"os"
	"syscall"
)

var errNotLinux = errors.New("netlab unavailable: network namespaces need Linux")

// Available returns nil when the lab can be built here; never outside Linux.
func Available() error { return errNotLinux }

// Do runs fn in namespace ns; never outside Linux.
func (l *Lab) Do(ns string, fn func() error) error { return errNotLinux }

func newProcessGroup() *syscall.SysProcAttr { return nil }

func killGroup(p *os.Process, sig syscall.Signal) error {
	if p == nil {
		return os.ErrProcessDone
	}
	return p.Kill()
}

//go:build !linux

package netbench

import "errors"

// ReadCPU needs Linux's /proc.
func ReadCPU(int) (CPUSample, error) {
	return CPUSample{}, errors.New("reading a process's CPU time needs Linux's /proc")
}

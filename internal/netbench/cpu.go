package netbench

import (
	"testing"
	"time"
)

// CPUSample is one process's counters at a moment, summed over its
// threads: CPU time, context switches, and the time its threads were
// runnable but waited for a CPU (the run-queue delay of
// /proc/PID/task/TID/schedstat): what the machine's other work took from
// it.
type CPUSample struct {
	CPU, Wait time.Duration
	Switches  int64
}

// CPURate is one process's use over a window.
type CPURate struct {
	Pct     float64 // CPU of one core
	Secs    float64 // CPU seconds
	Wait    float64 // seconds runnable but not running, all threads
	Wakeups float64 // context switches per second, all threads
}

// CPUDuring runs fn and returns each pid's use meanwhile.
func CPUDuring(b testing.TB, fn func(), pids ...int) []CPURate {
	b.Helper()
	read := func() []CPUSample {
		ss := make([]CPUSample, len(pids))
		for i, pid := range pids {
			s, err := ReadCPU(pid)
			if err != nil {
				b.Fatal(err)
			}
			ss[i] = s
		}
		return ss
	}
	before := read()
	start := time.Now()
	fn()
	after := read()
	secs := time.Since(start).Seconds()
	r := make([]CPURate, len(pids))
	for i := range pids {
		cpu := (after[i].CPU - before[i].CPU).Seconds()
		r[i] = CPURate{
			Pct:     cpu / secs * 100,
			Secs:    cpu,
			Wait:    (after[i].Wait - before[i].Wait).Seconds(),
			Wakeups: float64(after[i].Switches-before[i].Switches) / secs,
		}
	}
	return r
}

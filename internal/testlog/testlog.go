// Package testlog writes a program's output into a test's log, one t.Log
// call per line, for the e2e tests that run the story or install a chart.
package testlog

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// Writer writes each complete line to t.Log and keeps an incomplete one
// for the next Write. It is safe for concurrent use.
type Writer struct {
	t   testing.TB
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

// New is a Writer into t's log.
func New(t testing.TB) *Writer { return &Writer{t: t} }

func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line) // incomplete: keep for the next write
			return len(p), nil
		}
		w.t.Log(strings.TrimSuffix(line, "\n"))
	}
}

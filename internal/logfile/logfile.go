// Package logfile is an append-only log file that rotates by size:
// PATH grows to a limit, then PATH.K-1 becomes PATH.K, …, PATH becomes
// PATH.1, and a new PATH starts. The oldest file beyond K is removed.
//
// A Writer is safe for concurrent use: each Write lands whole in one file.
// It assumes it is the only writer of PATH; two processes rotating the
// same file would lose lines.
package logfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// Defaults for Options fields left zero.
const (
	DefaultMaxBytes = 10 << 20 // 10 MiB
	DefaultKeep     = 3
)

// Options size the rotation; zero fields take the defaults.
type Options struct {
	MaxBytes int64 // rotate before a write would take the file past this size
	Keep     int   // old files kept, PATH.1 (newest) .. PATH.Keep
}

// Writer is an io.WriteCloser appending to a size-rotated file.
type Writer struct {
	path string
	opts Options

	mu     sync.Mutex // guards the fields below
	f      *os.File   // nil once closed
	size   int64
	closed bool
}

// New opens (appending) or creates path with mode 0640, creating its
// directory with mode 0755.
func New(path string, opts Options) (*Writer, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	w := &Writer{path: path, opts: opts}
	if err := w.openLocked(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) openLocked() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Write appends p, rotating first when p would take the file past
// MaxBytes. A single write larger than MaxBytes goes into a file of its own.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, fs.ErrClosed
	}
	if w.size > 0 && w.size+int64(len(p)) > w.opts.MaxBytes {
		if err := w.rotateLocked(); err != nil {
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	return n, err
}

// rotateLocked shifts PATH.i to PATH.i+1, PATH to PATH.1, and opens a new PATH.
func (w *Writer) rotateLocked() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("log file: rotate: %w", err)
	}
	w.f = nil
	var errs []error
	for i := w.opts.Keep - 1; i >= 1; i-- {
		err := os.Rename(w.old(i), w.old(i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Rename(w.path, w.old(1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	// Reopen even when a rename failed: losing the log is worse than an
	// oversized file.
	if err := w.openLocked(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("log file: rotate: %w", err)
	}
	return nil
}

func (w *Writer) old(i int) string { return w.path + "." + strconv.Itoa(i) }

// Close closes the file; later writes fail with fs.ErrClosed. It is idempotent.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

package logfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestRotation(t *testing.T) {
	for _, tc := range []struct {
		name       string
		max        int64
		keep       int
		writes     int // writes of 10 bytes
		wantSizes  map[string]int64
		wantAbsent []string
	}{
		{"below limit", 100, 3, 10, map[string]int64{"log": 100}, []string{"log.1"}},
		{"one rotation", 100, 3, 11, map[string]int64{"log": 10, "log.1": 100}, []string{"log.2"}},
		{"keeps K", 30, 2, 20, map[string]int64{"log": 20, "log.1": 30, "log.2": 30}, []string{"log.3"}},
		{"keep one", 20, 1, 7, map[string]int64{"log": 10, "log.1": 20}, []string{"log.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "sub")
			path := filepath.Join(dir, "log")
			w, err := New(path, Options{MaxBytes: tc.max, Keep: tc.keep})
			if err != nil {
				t.Fatal(err)
			}
			for range tc.writes {
				if _, err := w.Write([]byte("123456789\n")); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.wantSizes {
				st, err := os.Stat(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if st.Size() != want {
					t.Errorf("%s: %d bytes, want %d", name, st.Size(), want)
				}
			}
			for _, name := range tc.wantAbsent {
				if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
					t.Errorf("%s exists", name)
				}
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != len(tc.wantSizes) {
				t.Errorf("%d files, want %d", len(entries), len(tc.wantSizes))
			}
		})
	}
}

func TestModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	w, err := New(filepath.Join(dir, "log"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for path, want := range map[string]os.FileMode{dir: 0o755 | os.ModeDir, filepath.Join(dir, "log"): 0o640} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		// The umask may take bits away, never add them.
		if st.Mode()&^want != 0 {
			t.Errorf("%s: mode %v, want at most %v", path, st.Mode(), want)
		}
	}
}

func TestAppendsAndClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	w, err := New(path, Options{MaxBytes: 8})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("new\n"))  // fits: 8 bytes
	w.Write([]byte("next\n")) // rotates
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if b, _ := os.ReadFile(path + ".1"); string(b) != "old\nnew\n" {
		t.Errorf("log.1 = %q", b)
	}
	if b, _ := os.ReadFile(path); string(b) != "next\n" {
		t.Errorf("log = %q", b)
	}
}

// TestConcurrentWriters checks, under -race, that lines from many
// goroutines land whole and none is lost across rotations.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	const writers, lines = 8, 200
	w, err := New(path, Options{MaxBytes: 4 << 10, Keep: 100})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range lines {
				fmt.Fprintf(w, "writer %d line %03d\n", i, j)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) > 4<<10 {
			t.Errorf("%s: %d bytes, over the limit", e.Name(), len(b))
		}
		all.Write(b)
	}
	got := strings.Split(strings.TrimSpace(all.String()), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines, want %d", len(got), writers*lines)
	}
	for _, l := range got {
		if !strings.HasPrefix(l, "writer ") || len(l) != len("writer 0 line 000") {
			t.Fatalf("torn line %q", l)
		}
	}
	if len(entries) < 2 {
		t.Errorf("%d files: no rotation happened", len(entries))
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLastLines(t *testing.T) {
	many := ""
	for i := range 5000 {
		many += fmt.Sprintf("line %d %s\n", i, strings.Repeat("x", 20))
	}
	for _, tc := range []struct {
		name, content string
		n             int
		want          string
	}{
		{"fewer", "a\nb\n", 5, "a\nb\n"},
		{"exact", "a\nb\nc\n", 3, "a\nb\nc\n"},
		{"tail", "a\nb\nc\n", 2, "b\nc\n"},
		{"no final newline", "a\nb\nc", 2, "b\nc"},
		{"zero", "a\n", 0, ""},
		{"empty", "", 3, ""},
		{"across chunks", many, 2, fmt.Sprintf("line 4998 %[1]s\nline 4999 %[1]s\n", strings.Repeat("x", 20))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(writeFile(t, "log", tc.content))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := lastLines(f, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLogsCommand(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "daemon.sock")
	content := ""
	for i := range 60 {
		content += fmt.Sprintf("msg=%d\n", i)
	}
	if err := os.WriteFile(daemonLogPath(sock), []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	out, err := runTether(t, "--socket", sock, "logs", "-n", "3")
	if err != nil {
		t.Fatal(err)
	}
	if out != "msg=57\nmsg=58\nmsg=59\n" {
		t.Errorf("logs -n 3: %q", out)
	}
	out, _ = runTether(t, "--socket", sock, "logs")
	if got := strings.Count(out, "\n"); got != 50 {
		t.Errorf("logs: %d lines, want the default 50", got)
	}
	_, err = runTether(t, "--socket", filepath.Join(t.TempDir(), "none.sock"), "logs")
	if err == nil || !strings.Contains(err.Error(), "no daemon log at") {
		t.Errorf("no log: %v", err)
	}
}

// syncBuffer is a bytes.Buffer for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTailFollowRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "daemon.log")
	os.WriteFile(path, []byte("one\n"), 0o640)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- tailLog(ctx, &out, path, 10, true) }()
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if out.String() == want {
				return
			}
		}
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	waitFor("one\n")
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("two\n")
	f.Close()
	waitFor("one\ntwo\n")
	os.Rename(path, path+".1")
	os.WriteFile(path, []byte("three\n"), 0o640)
	waitFor("one\ntwo\nthree\n")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow ended with %v", err)
	}
}

func TestJournalLogsHaveNoTime(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		wantTime  bool
	}{
		{"terminal", "", true},
		{"INVOCATION_ID", "INVOCATION_ID", false},
		{"JOURNAL_STREAM", "JOURNAL_STREAM", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("INVOCATION_ID", "")
			t.Setenv("JOURNAL_STREAM", "")
			if tc.env != "" {
				t.Setenv(tc.env, "8:1234")
			}
			// logger writes to stderr unless told otherwise: swap it.
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			stderr := os.Stderr
			os.Stderr = w
			g := &globals{logLevel: "info"}
			g.logger().Info("hello", "component", "test")
			os.Stderr = stderr
			w.Close()
			var b bytes.Buffer
			b.ReadFrom(r)
			line := b.String()
			if !strings.Contains(line, "level=INFO") || !strings.Contains(line, "component=test") {
				t.Errorf("line %q lacks level or attrs", line)
			}
			if got := strings.Contains(line, "time="); got != tc.wantTime {
				t.Errorf("line %q: time present %v, want %v", line, got, tc.wantTime)
			}
		})
	}
}

func TestLogFileFlag(t *testing.T) {
	t.Setenv("INVOCATION_ID", "x") // an explicit file wins over the journal
	path := filepath.Join(t.TempDir(), "logs", "agent.log")
	g := &globals{logLevel: "info"}
	closeLog, err := g.openLog(path)
	if err != nil {
		t.Fatal(err)
	}
	g.logger().Info("hello", "component", "agent")
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), "component=agent") {
		t.Errorf("log file %q, %v", b, err)
	}
}

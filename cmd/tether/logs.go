package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/logfile"
)

const logFileUsage = "write the log to this file, rotated at 10 MiB keeping 3 old files (FILE.1..FILE.3); default stderr"

// underSystemd reports whether systemd started this process, so that
// stderr goes to the journal.
func underSystemd() bool {
	return os.Getenv("INVOCATION_ID") != "" || os.Getenv("JOURNAL_STREAM") != ""
}

// dropTime is a slog ReplaceAttr removing the time, for journald.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.Attr{}
	}
	return a
}

// openLog sends g.logger's output to a rotating file at path; "" keeps
// stderr. An explicit file wins over the journal: a daemon that `tether
// connect` spawned may inherit INVOCATION_ID from the user's session. The
// returned function closes the file.
func (g *globals) openLog(path string) (func() error, error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	w, err := logfile.New(path, logfile.Options{})
	if err != nil {
		return nil, fmt.Errorf("--log-file: %w", err)
	}
	g.logOut = w
	return w.Close, nil
}

func newLogsCmd(g *globals) *cobra.Command {
	var lines int
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Show the daemon's recent log (the journal when it runs as the systemd service)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if lines < 0 {
				return fmt.Errorf("-n: %d is not a number of lines", lines)
			}
			ctx := cmd.Context()
			if serviceActive(ctx, g.socket) {
				args := []string{"-u", serviceName, "-n", strconv.Itoa(lines), "--no-pager"}
				if follow {
					args = append(args, "-f")
				}
				j := exec.CommandContext(ctx, "journalctl", args...)
				j.Stdout, j.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
				if err := j.Run(); err != nil && ctx.Err() == nil {
					return fmt.Errorf("journalctl -u %s: %w", serviceName, err)
				}
				return nil
			}
			return tailLog(ctx, cmd.OutOrStdout(), daemonLogPath(g.socket), lines, follow)
		},
	}
	cmd.Flags().IntVarP(&lines, "lines", "n", 50, "show this many of the last lines")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines until interrupted")
	return cmd
}

// followPoll is how often a followed log is checked for new lines.
const followPoll = 250 * time.Millisecond

// tailLog writes the last n lines of path to out and, with follow, what
// is appended later until ctx ends, reopening path when it is rotated.
func tailLog(ctx context.Context, out io.Writer, path string, n int, follow bool) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no daemon log at %s: the daemon runs elsewhere (as a service: journalctl -u %s), with another --socket, or has not run yet", path, serviceName)
	}
	if err != nil {
		return fmt.Errorf("reading the daemon log: %w", err)
	}
	defer func() { f.Close() }()
	tail, err := lastLines(f, n)
	if err != nil {
		return fmt.Errorf("reading the daemon log %s: %w", path, err)
	}
	if _, err := out.Write(tail); err != nil || !follow {
		return err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		// Copy what was appended, then switch files if path was rotated
		// (the rest of the old file is copied first).
		if _, err := io.Copy(out, f); err != nil {
			return err
		}
		if cur, err := f.Stat(); err == nil {
			if st, err := os.Stat(path); err == nil && !os.SameFile(cur, st) {
				if nf, err := os.Open(path); err == nil {
					io.Copy(out, f)
					f.Close()
					f = nf
					continue
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil // interrupting a follow is its normal end
		case <-tick.C:
		}
	}
}

// lastLines returns the last n lines of f, reading backwards from the end
// in chunks so that a large log costs no more than its tail.
func lastLines(f *os.File, n int) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	const chunk = 32 << 10
	end := st.Size()
	var buf []byte
	for pos := end; ; {
		// A final newline ends the last line; it does not start one.
		count := bytes.Count(buf, []byte("\n"))
		if len(buf) > 0 && buf[len(buf)-1] == '\n' {
			count--
		}
		if count >= n || pos == 0 {
			break
		}
		step := min(int64(chunk), pos)
		pos -= step
		b := make([]byte, step)
		if _, err := f.ReadAt(b, pos); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		buf = append(b, buf...)
	}
	// Keep what follows the n-th newline from the end (ignoring a final one).
	body := buf
	if len(body) > 0 && body[len(body)-1] == '\n' {
		body = body[:len(body)-1]
	}
	for i, seen := len(body)-1, 0; i >= 0; i-- {
		if body[i] == '\n' {
			seen++
			if seen == n {
				return buf[i+1:], nil
			}
		}
	}
	return buf, nil
}

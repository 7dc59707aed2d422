package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tether-dev/tether/daemon"
	"github.com/tether-dev/tether/platform"
	pb "github.com/tether-dev/tether/rpc/daemon"
	"github.com/tether-dev/tether/wire"
)

// Starting the daemon for `tether connect` and stopping it for `tether quit
// --stop-daemon`: through systemd when the installed service serves the
// socket, else this binary as a background process.
const (
	serviceName  = platform.SystemdUnitName
	serviceUnit  = platform.SystemdUnitPath
	defaultLog   = platform.LaunchdLogPath
	startTimeout = 15 * time.Second
	stopTimeout  = 15 * time.Second
)

// socketState is what a plain dial of the control socket finds. It is no
// control call, so it never counts as activity.
type socketState int

const (
	socketAbsent    socketState = iota // no socket, or nobody listens
	socketListening                    // a daemon listens (it may not serve yet)
	socketForbidden                    // something is there, but not for us
)

func probeSocket(socket string) socketState {
	c, err := net.DialTimeout("unix", socket, time.Second)
	switch {
	case err == nil:
		c.Close()
		return socketListening
	case errors.Is(err, fs.ErrPermission):
		return socketForbidden
	default:
		return socketAbsent
	}
}

// serviceInstalled reports whether the installed systemd service runs the
// daemon on socket.
func serviceInstalled(socket string) bool {
	unit, err := os.ReadFile(serviceUnit)
	if err != nil || filepath.Clean(unitSocket(string(unit))) != filepath.Clean(socket) {
		return false
	}
	_, err = exec.LookPath("systemctl")
	return err == nil
}

// unitSocket is the control socket of the daemon a systemd unit starts:
// the --socket of its ExecStart, or the default.
func unitSocket(unit string) string {
	for _, line := range strings.Split(unit, "\n") {
		cmdline, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecStart=")
		if !ok {
			continue
		}
		args := strings.Fields(cmdline)
		for i, a := range args {
			if v, ok := strings.CutPrefix(a, "--socket="); ok {
				return strings.Trim(v, `"`)
			}
			if a == "--socket" && i+1 < len(args) {
				return strings.Trim(args[i+1], `"`)
			}
		}
	}
	return daemon.DefaultSocket
}

// daemonLogPath is where a daemon that connect starts writes: the system
// log for the default socket, beside the socket for any other, so daemons
// side by side keep their logs apart.
func daemonLogPath(socket string) string {
	if socket == daemon.DefaultSocket {
		return defaultLog
	}
	return socket + ".log"
}

// ensureDaemon starts a daemon when none listens on g.socket and waits
// until it answers, with a progress line on stderr.
func ensureDaemon(ctx context.Context, g *globals, stderr io.Writer) error {
	if probeSocket(g.socket) != socketAbsent {
		return nil
	}
	if serviceInstalled(g.socket) {
		if !isRoot() {
			return fmt.Errorf("the tether service is not running: start it with `sudo systemctl start %s` or run `sudo tether connect`", serviceName)
		}
		logName := "journalctl -u " + serviceName
		fmt.Fprintf(stderr, "Starting the tether daemon… (systemctl start %s; log: %s)\n", serviceName, logName)
		if out, err := exec.CommandContext(ctx, "systemctl", "start", serviceName).CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl start %s: %w: %s (log: %s)", serviceName, err, strings.TrimSpace(string(out)), logName)
		}
		return waitReady(ctx, g.socket, logName, nil)
	}
	if !isRoot() {
		return fmt.Errorf("no daemon answers on %s, and starting the daemon needs root: run `sudo tether daemon install` or `sudo tether connect`", g.socket)
	}
	logPath := daemonLogPath(g.socket)
	fmt.Fprintf(stderr, "Starting the tether daemon… (log: %s)\n", logPath)
	exited, err := spawnDaemon(g, logPath)
	if err != nil {
		return err
	}
	return waitReady(ctx, g.socket, logPath, exited)
}

// spawnDaemon starts `tether daemon` in a session of its own, logging to
// logPath (--log-file, which rotates it). Its stdout and stderr, which only
// an early failure or a panic writes, go to logPath.stderr, the previous
// one kept as logPath.stderr.1. The channel receives its exit should it
// die while the CLI still runs.
func spawnDaemon(g *globals, logPath string) (<-chan error, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("starting the daemon: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("starting the daemon: log directory: %w", err)
	}
	stderrPath := logPath + ".stderr"
	if st, err := os.Stat(stderrPath); err == nil && st.Size() > 0 {
		os.Rename(stderrPath, stderrPath+".1") // best effort: keeps the last crash
	}
	logf, err := os.OpenFile(stderrPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("starting the daemon: %w", err)
	}
	defer logf.Close() // the daemon has its own descriptor once started
	// The environment goes along: TETHER_* configure the daemon too.
	cmd := exec.Command(exe, "--socket", g.socket, "--log-level", g.logLevel, "daemon", "--log-file", logPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the daemon: %w", err)
	}
	exited := make(chan error, 1)
	// Reaps the daemon should it die during the start; otherwise it ends
	// with the CLI, which leaves the daemon to init.
	go func() { exited <- cmd.Wait() }()
	return exited, nil
}

// waitReady polls the daemon's status (not as activity) until it answers,
// it exits, or startTimeout passes; errors name the log.
func waitReady(ctx context.Context, socket, logName string, exited <-chan error) error {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if daemonAnswers(ctx, socket) {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the tether daemon exited while starting (%v): %s (log: %s)", err, lastLogLine(logName), logName)
		case <-deadline.C:
			return fmt.Errorf("the tether daemon did not answer on %s within %v: see its log, %s", socket, startTimeout, logName)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func daemonAnswers(ctx context.Context, socket string) bool {
	cc, err := daemon.Dial(socket)
	if err != nil {
		return false
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, wire.MDNoActivity, "1")
	_, err = pb.NewDaemonClient(cc).Status(ctx, &pb.StatusRequest{})
	return err == nil
}

// lastLogLine is the last line of the log file, usually the daemon's
// reason for exiting; what a spawned daemon wrote to stderr (path.stderr)
// comes first, as an early failure ends there.
func lastLogLine(path string) string {
	b, err := os.ReadFile(path + ".stderr")
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "no log"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// serviceActive reports whether the systemd service serves socket and runs.
func serviceActive(ctx context.Context, socket string) bool {
	return serviceInstalled(socket) && exec.CommandContext(ctx, "systemctl", "is-active", "--quiet", serviceName).Run() == nil
}

// stopDaemon stops the daemon on g.socket and waits until its socket is
// gone, which the daemon removes after routes and TUN.
func stopDaemon(ctx context.Context, g *globals) error {
	if serviceActive(ctx, g.socket) {
		// systemd would start a daemon that stopped behind its back again.
		if out, err := exec.CommandContext(ctx, "systemctl", "stop", serviceName).CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl stop %s: %w: %s", serviceName, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	cc, err := daemon.Dial(g.socket)
	if err != nil {
		return err
	}
	defer cc.Close()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sctx = metadata.AppendToOutgoingContext(sctx, wire.MDNoActivity, "1")
	// Unavailable: the daemon closed the connection while stopping, or
	// was gone already.
	if _, err := pb.NewDaemonClient(cc).Shutdown(sctx, &pb.ShutdownRequest{}); err != nil && status.Code(err) != codes.Unavailable {
		return err
	}
	deadline := time.Now().Add(stopTimeout)
	for {
		if _, err := os.Stat(g.socket); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the tether daemon on %s did not stop within %v: see its log, %s", g.socket, stopTimeout, daemonLogPath(g.socket))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

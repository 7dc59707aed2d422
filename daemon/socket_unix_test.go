//go:build linux || darwin

package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc"

	pb "github.com/tether-dev/tether/rpc/daemon"
)

// TestControlSocket: the socket is 0660 with its group, and the daemon sees
// the caller's uid.
func TestControlSocket(t *testing.T) {
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Skip("own group unknown:", err)
	}
	sock := filepath.Join(t.TempDir(), "run", "daemon.sock")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ln, err := listenSocket(sock, g.Name, log)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("mode %v, want 0660", fi.Mode().Perm())
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; int(gid) != os.Getgid() {
		t.Errorf("group %d, want %d", gid, os.Getgid())
	}
	if _, err := listenSocket(sock, "", log); err == nil || !strings.Contains(err.Error(), "already listens") {
		t.Errorf("second listen: %v, want already listens", err)
	}

	seen := make(chan uint32, 1)
	srv := grpc.NewServer(grpc.Creds(peerCreds{}), grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		uid, ok := callerUID(ctx)
		if !ok {
			t.Error("no peer uid")
		}
		seen <- uid
		return &pb.StatusResponse{}, nil
	}))
	pb.RegisterDaemonServer(srv, pb.UnimplementedDaemonServer{})
	go srv.Serve(ln)
	defer srv.Stop()
	cc, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := pb.NewDaemonClient(cc).Status(context.Background(), &pb.StatusRequest{}); err != nil {
		t.Fatal(err)
	}
	if uid := <-seen; int(uid) != os.Getuid() {
		t.Errorf("peer uid %d, want %d", uid, os.Getuid())
	}
}

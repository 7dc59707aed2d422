// Command demo is make demo-k8s: the story of make demo (internal/story)
// on the test cluster (internal/kubelab), with `tether helm install` and a
// real Deployment. It brings a cluster up in a directory of its own, tells
// the story, and tears the cluster down on success, failure and Ctrl-C; it
// exits non-zero at the first wrong step.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/internal/kubestage"
	"github.com/tether-dev/tether/internal/story"
)

func main() {
	tether := flag.String("tether", "bin/tether", "the tether binary (make build)")
	bins := flag.String("bins", "bin/kube", "directory of the binaries make kube-bins builds")
	images := flag.String("images", "bin/image", "directory of the OCI tarballs make image builds")
	dir := flag.String("dir", "/tmp/tether-kubelab-demo", "the cluster's state directory (not make kube-up's: that cluster stays)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *tether, *bins, *images, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "demo-k8s:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, tether, bins, images, dir string) (err error) {
	bin, err := filepath.Abs(tether)
	if err != nil {
		return err
	}
	var tars []string
	for _, img := range []string{"pause.tar", "tether.tar", "testapp.tar"} {
		tars = append(tars, filepath.Join(images, img))
	}
	// The tests of the test cluster wait for the demo, and it for them.
	lockCtx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	unlock, err := kubelab.LockMachine(lockCtx)
	cancel()
	if err != nil {
		return err
	}
	defer unlock()
	fmt.Println("starting the test cluster (internal/kubelab) ...")
	c, err := kubelab.Up(ctx, kubelab.Options{Dir: dir, Bins: bins, Images: tars})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("removing the test cluster")
		err = errors.Join(err, c.Down())
	}()
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
	if err != nil {
		return err
	}
	admin, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tether-story-k8s-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	st, cleanup := kubestage.Stage(c, admin, bin, work)
	// The cluster goes down after; the processes on the laptops go first.
	defer func() { err = errors.Join(err, cleanup()) }()
	return story.Tell(ctx, st, bin, os.Stdout)
}

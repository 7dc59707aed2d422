// Command kubelab starts and stops the test cluster for people:
// make kube-up and make kube-down call it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/tether-dev/tether/internal/kubelab"
)

func main() {
	dir := flag.String("dir", envOr("KUBELAB_DIR", kubelab.DefaultDir), "state directory (env KUBELAB_DIR)")
	bins := flag.String("bins", "bin/kube", "directory of the binaries make kube-bins builds")
	images := flag.String("images", "bin/image", "directory of the OCI tarballs make image builds")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: kubelab [flags] up|down")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	var err error
	switch flag.Arg(0) {
	case "up":
		err = up(*dir, *bins, *images)
	case "down":
		err = kubelab.Down(*dir)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func up(dir, bins, images string) error {
	tars, err := filepath.Glob(filepath.Join(images, "*.tar"))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := kubelab.Up(ctx, kubelab.Options{Dir: dir, Bins: bins, Images: tars, Log: os.Stderr})
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(bins)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "kubelab: cluster running; kubeconfigs of the test users in %s/users, for the laptop namespace (%s) in %s/laptop; stop it with make kube-down\n",
		c.Dir, kubelab.LaptopNetns, c.Dir)
	fmt.Printf("export KUBECONFIG=%s PATH=%s:$PATH\n", c.Kubeconfig(), abs)
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

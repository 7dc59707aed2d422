// Package labtest shares one real test cluster (internal/kubelab) among
// the tests of a kube/ package: Main starts it for the test process and
// tears it down after, or records why the tests skip.
package labtest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tether-dev/tether/internal/kubelab"
)

var (
	cluster    *kubelab.Cluster
	admin      kubernetes.Interface
	adminREST  *rest.Config
	skipReason string
)

// Main runs m's tests with a cluster in dir (KUBELAB_TEST_DIR wins), bins
// from KUBELAB_BINS or ../../bin/kube, and the OCI tarballs named by images
// (e.g. "pause.tar": every pod needs it) from KUBELAB_IMAGES or
// ../../bin/image imported into the node. Call it from TestMain.
func Main(m *testing.M, dir string, images ...string) {
	os.Exit(Run(m, dir, images...))
}

// Run is Main returning the exit code, for a TestMain with work of its own
// to undo after.
func Run(m *testing.M, dir string, images ...string) int {
	flag.Parse()
	bins := envOr("KUBELAB_BINS", "../../bin/kube")
	imageDir := envOr("KUBELAB_IMAGES", "../../bin/image")
	var tars []string
	for _, img := range images {
		tars = append(tars, filepath.Join(imageDir, img))
	}
	switch {
	case os.Geteuid() != 0:
		skipReason = "the test cluster needs root"
	case testing.Short():
		skipReason = "the test cluster does not run with -short"
	case len(kubelab.MissingBinaries(bins)) > 0:
		skipReason = fmt.Sprintf("the test cluster's binaries (%s) are missing in %s: run make kube-bins",
			strings.Join(kubelab.MissingBinaries(bins), ", "), bins)
	default:
		for _, tar := range tars {
			if _, err := os.Stat(tar); err != nil {
				skipReason = fmt.Sprintf("the test cluster's image %s is missing: run make image (make test does it as root)", tar)
			}
		}
	}
	if skipReason != "" {
		// go test shows a skipped benchmark's reason only with -v: make
		// bench says here why the cluster's figures are missing.
		fmt.Fprintf(os.Stderr, "labtest: %s; the tests and benchmarks on it skip\n", skipReason)
		return m.Run()
	}
	if d := os.Getenv("KUBELAB_TEST_DIR"); d != "" {
		dir = d
	}
	// Held until after Down: internal/kubelab's tests and internal/apitest
	// take the machine in turns with this package.
	lockCtx, lockCancel := context.WithTimeout(context.Background(), 20*time.Minute)
	unlock, err := kubelab.LockMachine(lockCtx)
	lockCancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer unlock()
	c, err := kubelab.Up(context.Background(), kubelab.Options{Dir: dir, Bins: bins, Images: tars, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// An interrupted run tears down before it exits: the lock goes with
	// the process, and a cluster left running would stop the next
	// package's.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			fmt.Fprintln(os.Stderr, "kubelab: interrupted; tearing down")
			_ = c.Down()
			os.Exit(1)
		}
	}()
	code := func() int {
		rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if admin, err = kubernetes.NewForConfig(rc); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cluster, adminREST = c, rc
		return m.Run()
	}()
	if err := c.Down(); err != nil {
		fmt.Fprintln(os.Stderr, "kubelab: teardown:", err)
		code = 1
	}
	return code
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Cluster returns the cluster and its admin's client, or skips t saying
// why there is none.
func Cluster(t testing.TB) (*kubelab.Cluster, kubernetes.Interface, *rest.Config) {
	t.Helper()
	if cluster == nil {
		t.Skip(skipReason)
	}
	return cluster, admin, rest.CopyConfig(adminREST)
}

// Namespace creates a namespace named after the test, deleted after it.
func Namespace(t testing.TB, admin kubernetes.Interface) string {
	t.Helper()
	name := "t-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := admin.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return name
}

// Eventually polls f every tick until it returns nil, for at most limit.
func Eventually(t testing.TB, what string, limit, tick time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, limit, err)
		}
		time.Sleep(tick)
	}
}

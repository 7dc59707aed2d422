package kubelab

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// importImage loads an OCI tarball into the node's containerd, in the
// namespace the CRI plugin reads; pods use it with imagePullPolicy: Never.
func (c *Cluster) importImage(ctx context.Context, tarball string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", "--address", c.containerdSocket(), "-n", "k8s.io", "images", "import", tarball).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubelab: import %s into containerd: %w: %s", tarball, err, strings.TrimSpace(string(out)))
	}
	c.logf("imported %s", tarball)
	return nil
}

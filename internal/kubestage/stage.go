package kubestage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tether-dev/tether/internal/kubelab"
	"github.com/tether-dev/tether/internal/netlab"
	"github.com/tether-dev/tether/internal/story"
)

// WebIP is Service default/web's ClusterIP in the story: fixed, so the
// keepalive script's URL is known before the Service exists.
const WebIP = "198.18.160.80"

// StoryNamespace is where the story's default/web runs.
const StoryNamespace = "default"

// StoryRules are the story's: the same as make demo's.
var StoryRules = Rules{BlockTimeout: story.BlockTimeout, TTL: story.TTL, ReportInterval: story.ReportInterval}

// Stage is the story on the cluster: `tether helm install` as the admin,
// Deployment default/web of the test app, the chart's developer roles bound
// to the kubelab users' group and carol's revoke Role through the API;
// alice, bob and carol on the three laptops (kubelab.Laptops) connecting
// through their kubeconfigs. dir holds the sockets and logs. Cleanup removes
// what SetUp made in the cluster.
func Stage(c *kubelab.Cluster, admin kubernetes.Interface, tether, dir string) (st story.Stage, cleanup func() error) {
	lab := &netlab.Lab{} // the processes only: the namespaces are kubelab's
	url := fmt.Sprintf("http://%s:%d/", WebIP, WebPort)
	st = story.Stage{
		Lab:     lab,
		Laptops: [3]string{kubelab.Laptops[0].Netns, kubelab.Laptops[1].Netns, kubelab.Laptops[2].Netns},
		Dir:     dir,
		SetUp: func(ctx context.Context) (string, error) {
			return setUp(ctx, c, admin, tether, dir)
		},
		Env: func(user string) []string { return UserEnv(c, user, filepath.Join(dir, user+"-home")) },
		// Without --manager: the kubeconfig's cluster, through a
		// port-forward.
		ConnectArgs: func(string) []string { return nil },
		Routes:      fmt.Sprintf("%s and %s through the API server", kubelab.PodCIDR, kubelab.ServiceCIDR),
		Request: func(ctx context.Context, user string) string {
			return AppAnswer(story.Curl(ctx, lab, kubelab.ClusterNetns, url, user))
		},
		URL: url,
		// The first intercept injects the agent: a rollout of web.
		Settle: 2 * time.Minute,
		CollectLogs: func() {
			out, err := c.Kubectl(context.Background(), "logs", "-n", ManagerNamespace, "deployment/traffic-manager", "--tail=200")
			if err != nil {
				out = append(out, err.Error()...)
			}
			_ = os.WriteFile(filepath.Join(dir, "manager.log"), out, 0o644)
		},
	}
	cleanup = func() error {
		ctx := context.Background()
		err := lab.Close()
		if out, uerr := exec.Command(tether, "helm", "uninstall", "--kubeconfig", c.Kubeconfig()).CombinedOutput(); uerr != nil && !strings.Contains(string(out), "not installed") {
			err = errors.Join(err, fmt.Errorf("tether helm uninstall: %w: %s", uerr, out))
		}
		rbac := admin.RbacV1()
		return errors.Join(err, DeleteWeb(ctx, admin, StoryNamespace),
			ignoreNotFound(rbac.RoleBindings(StoryNamespace).Delete(ctx, "tether-developers", metav1.DeleteOptions{})),
			ignoreNotFound(rbac.RoleBindings(ManagerNamespace).Delete(ctx, "tether-developers", metav1.DeleteOptions{})),
			ignoreNotFound(rbac.RoleBindings(ManagerNamespace).Delete(ctx, "tether-revoke-carol", metav1.DeleteOptions{})),
			ignoreNotFound(rbac.Roles(ManagerNamespace).Delete(ctx, "tether-revoke-carol", metav1.DeleteOptions{})))
	}
	return st, cleanup
}

// UserEnv is the environment of user's tether CLI on a laptop: the user's
// kubeconfig for the laptops, and home (created if missing) as HOME and
// XDG_RUNTIME_DIR. The laptops' users are all root on this machine, and a
// user's connect keeps its port-forward's socket and record there: each
// developer gets their own, as on their own machine.
func UserEnv(c *kubelab.Cluster, user, home string) []string {
	_ = os.MkdirAll(home, 0o700)
	return []string{"KUBECONFIG=" + c.UserKubeconfig(user, true), "HOME=" + home, "XDG_RUNTIME_DIR=" + home}
}

// AppAnswer is "hello from the app" for an answer of the test app's web
// pods (which say their pod name and the headers), else the answer: the
// story knows the workload by that line.
func AppAnswer(body string) string {
	if strings.HasPrefix(body, "pod="+Web+"-") {
		return "hello from the app"
	}
	return body
}

func setUp(ctx context.Context, c *kubelab.Cluster, admin kubernetes.Interface, tether, dir string) (string, error) {
	args := []string{"helm", "install", "--kubeconfig", c.Kubeconfig()}
	for _, s := range Sets(StoryRules) {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(ctx, tether, args...)
	logf, err := os.Create(filepath.Join(dir, "helm-install.log"))
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("tether helm install: %w (see helm-install.log)", err)
	}
	if err := deployWeb(ctx, admin, StoryNamespace, 1, WebIP); err != nil {
		return "", err
	}
	if err := BindDevelopers(ctx, admin, StoryNamespace); err != nil {
		return "", err
	}
	if err := GrantRevoke(ctx, admin, "carol"); err != nil {
		return "", err
	}
	return fmt.Sprintf("`tether helm install` (block timeout %s, TTL %s), Deployment default/web of the test app behind Service web %s:%d, developers bound to the chart's roles, carol may revoke; laptops %s, %s, %s",
		story.BlockTimeout, story.TTL, WebIP, WebPort, kubelab.Laptops[0].Addr, kubelab.Laptops[1].Addr, kubelab.Laptops[2].Addr), nil
}

// DeleteWeb removes Deployment and Service web from ns and waits until its
// pods are gone.
func DeleteWeb(ctx context.Context, cs kubernetes.Interface, ns string) error {
	err := errors.Join(
		ignoreNotFound(cs.AppsV1().Deployments(ns).Delete(ctx, Web, metav1.DeleteOptions{})),
		ignoreNotFound(cs.CoreV1().Services(ns).Delete(ctx, Web, metav1.DeleteOptions{})))
	if err != nil {
		return err
	}
	return Poll(ctx, "the pods of "+ns+"/"+Web+" gone", time.Minute, func() error {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + Web})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d left", len(pods.Items))
		}
		return nil
	})
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

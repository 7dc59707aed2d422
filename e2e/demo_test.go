package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/story"
	"github.com/tether-dev/tether/internal/testlog"
)

// TestStory runs `make demo`'s story: the rules as a user sees them, each
// step checking its own outcome.
func TestStory(t *testing.T) {
	requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := testlog.New(t)
	if err := story.Run(ctx, story.Options{Tether: tetherBin, Out: out}); err != nil {
		t.Fatal(err)
	}
}

// TestStoryCleansUpOnCancel: a story cancelled half way (Ctrl-C in make
// demo) fails and leaves no namespace, process or directory behind.
func TestStoryCleansUpOnCancel(t *testing.T) {
	requireLab(t)
	before := storyLeftovers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	err := story.Run(ctx, story.Options{Tether: tetherBin, Out: testlog.New(t)})
	if err == nil || ctx.Err() == nil {
		t.Fatalf("a story cancelled after 4s returned %v", err)
	}
	if after := storyLeftovers(t); after != before {
		t.Fatalf("left behind: %s (before: %s)", after, before)
	}
}

// storyLeftovers lists the story's namespaces, directories and processes.
func storyLeftovers(t *testing.T) string {
	t.Helper()
	// `ip netns add` names live in /run/netns; reading it avoids `ip
	// netns list`, which stumbles over other tests' namespaces being
	// deleted.
	var out []string
	ns, _ := filepath.Glob("/run/netns/story-*")
	out = append(out, ns...)
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "tether-story-*"))
	out = append(out, dirs...)
	// Every process of the story runs with a socket or a log in its
	// directory, which carries the tether-story- prefix.
	ps, _ := exec.Command("pgrep", "-af", "tether-story-").Output()
	for _, line := range strings.Split(strings.TrimSpace(string(ps)), "\n") {
		if line != "" && !strings.Contains(line, "pgrep") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "; ")
}

package e2e

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/story"
)

// TestStory runs `make demo`'s story: the rules as a user sees them, each
// step checking its own outcome.
func TestStory(t *testing.T) {
	requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := &lineLogger{t: t}
	if err := story.Run(ctx, story.Options{Tether: tetherBin, Out: out}); err != nil {
		t.Fatal(err)
	}
}

// lineLogger writes each complete line to t.Log.
type lineLogger struct {
	t   *testing.T
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line) // incomplete: keep for the next write
			return len(p), nil
		}
		l.t.Log(strings.TrimSuffix(line, "\n"))
	}
}

package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tether-dev/tether/manager"
)

// countingPods is an in-memory PodWorkloads that counts its lookups.
type countingPods struct {
	calls int
	refs  map[string]manager.WorkloadRef // by namespace/name/uid
}

func (p *countingPods) WorkloadOfPod(_ context.Context, ns, name, uid string) (manager.WorkloadRef, error) {
	p.calls++
	ref, ok := p.refs[ns+"/"+name+"/"+uid]
	if !ok {
		return manager.WorkloadRef{}, errors.New("no such pod")
	}
	return ref, nil
}

// TestCachedPods: a pod's workload is looked up once per ttl; another
// uid of the same pod name is another pod; failures are asked again.
func TestCachedPods(t *testing.T) {
	web := manager.WorkloadRef{Namespace: "shop", Name: "web", Kind: "Deployment"}
	next := &countingPods{refs: map[string]manager.WorkloadRef{"shop/web-1/u1": web, "shop/web-1/u2": web}}
	at := time.Unix(1000, 0)
	c := newCachedPods(next, 10*time.Second, func() time.Time { return at })
	ctx := context.Background()
	for _, step := range []struct {
		name      string
		advance   time.Duration
		pod, uid  string
		wantErr   bool
		wantCalls int
	}{
		{"first lookup", 0, "web-1", "u1", false, 1},
		{"cached", 5 * time.Second, "web-1", "u1", false, 1},
		{"another uid", 0, "web-1", "u2", false, 2},
		{"expired", 5 * time.Second, "web-1", "u1", false, 3},
		{"unknown pod", 0, "gone", "u9", true, 4},
		{"unknown pod, asked again", 0, "gone", "u9", true, 5},
	} {
		at = at.Add(step.advance)
		ref, err := c.WorkloadOfPod(ctx, "shop", step.pod, step.uid)
		if (err != nil) != step.wantErr || (!step.wantErr && ref != web) || next.calls != step.wantCalls {
			t.Fatalf("%s: %v, %v after %d lookups; want error=%v after %d", step.name, ref, err, next.calls, step.wantErr, step.wantCalls)
		}
	}
	if len(c.entries) != 2 {
		t.Fatalf("%d entries, want the two live pods' (expired ones pruned)", len(c.entries))
	}
}

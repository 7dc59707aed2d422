package auth

import (
	"context"
	"sync"
	"time"

	"github.com/tether-dev/tether/manager"
)

// cachedPods remembers the workloads of agents' pods for as long as the
// token cache remembers their tokens: an agent opens a stream per inbound
// connection, and each would otherwise read its pod and ReplicaSet from
// the API server. A pod deleted within that time is no staler than its
// cached TokenReview (a bound token dies with its pod). Failures are not
// remembered.
type cachedPods struct {
	next PodWorkloads
	ttl  time.Duration
	now  func() time.Time

	mu      sync.Mutex          // guards entries
	entries map[string]podEntry // by namespace/name/uid
}

type podEntry struct {
	ref manager.WorkloadRef
	at  time.Time
}

func newCachedPods(next PodWorkloads, ttl time.Duration, now func() time.Time) *cachedPods {
	return &cachedPods{next: next, ttl: ttl, now: now, entries: map[string]podEntry{}}
}

// WorkloadOfPod implements PodWorkloads.
func (c *cachedPods) WorkloadOfPod(ctx context.Context, namespace, name, uid string) (manager.WorkloadRef, error) {
	key := namespace + "/" + name + "/" + uid
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.ttl {
		return e.ref, nil
	}
	ref, err := c.next.WorkloadOfPod(ctx, namespace, name, uid)
	if err != nil {
		return manager.WorkloadRef{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Pruned as it grows: the entries are the pods of live agents, and
	// those of agents gone within the last ttl.
	for k, old := range c.entries {
		if now.Sub(old.at) >= c.ttl {
			delete(c.entries, k)
		}
	}
	c.entries[key] = podEntry{ref: ref, at: now}
	return ref, nil
}

package conflict

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestZZSlow(t *testing.T) {
	for _, re := range []string{"ai" + strings.Repeat("^", 2500) + "cce", strings.Repeat(",", 3000), `\pL`, `\pl000000`} {
		t0 := time.Now()
		r, err := compileRegex(re)
		t1 := time.Now()
		_, _ = regexp.Compile(re)
		t2 := time.Now()
		var n int
		if r != nil && r.d != nil {
			r.d.mu.Lock()
			n = len(r.d.states)
			r.d.mu.Unlock()
		}
		ps := probes(re, "al,", 1)
		t3 := time.Now()
		for _, p := range ps {
			if r != nil {
				r.re.MatchString(p)
				if r.d != nil {
					r.d.matchString(p)
				}
			}
		}
		t4 := time.Now()
		t.Logf("len %d err %v: compileRegex %v regexp %v probes(%d) %v states %d", len(re), err, t1.Sub(t0), t2.Sub(t1), len(ps), t4.Sub(t3), n)
	}
}

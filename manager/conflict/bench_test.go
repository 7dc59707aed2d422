package conflict

import (
	"fmt"
	"testing"
)

// existing returns n HTTP intercepts on one workload port, with filters
// made by the header condition pattern.
func existing(b *testing.B, n int, pattern string) []Intercept {
	b.Helper()
	out := make([]Intercept, n)
	for i := range out {
		out[i] = Intercept{Workload: wl, Port: 8080, Kind: HTTP, Filter: mustFilter(b, []string{fmt.Sprintf(pattern, i)}, "")}
	}
	return out
}

// checkAll is what the manager does when an intercept is requested: check
// it against every existing intercept of the workload.
func checkAll(in Intercept, all []Intercept) (conflicts int) {
	for _, other := range all {
		if c, _, _ := Conflict(in, other); c {
			conflicts++
		}
	}
	return conflicts
}

// BenchmarkConflict1000 checks one new intercept (x-user=user1000) against
// 1,000 existing ones (x-user=user<i>). One op is the full check.
func BenchmarkConflict1000(b *testing.B) {
	all := existing(b, 1000, "x-user=user%d")
	in := Intercept{Workload: wl, Port: 8080, Kind: HTTP, Filter: mustFilter(b, []string{"x-user=user1000"}, "")}
	b.ReportAllocs()
	for b.Loop() {
		if n := checkAll(in, all); n != 0 {
			b.Fatalf("%d conflicts", n)
		}
	}
}

// BenchmarkConflict1000Regex is the same with regexes on both sides, so
// every pair takes a product search: x-user=user<i>(-[a-z]+)? against a new
// (?i)user1\d*-admin filter, which conflicts with user1, user10..19 and
// user100..199. The new filter is compiled in every op, as a new intercept
// would be, so its DFA starts cold; the existing filters' DFAs stay warm.
func BenchmarkConflict1000Regex(b *testing.B) {
	all := existing(b, 1000, "x-user=user%d(-[a-z]+)?")
	b.ReportAllocs()
	for b.Loop() {
		in := Intercept{Workload: wl, Port: 8080, Kind: HTTP, Filter: mustFilter(b, []string{`x-user=(?i)user1\d*-admin`}, "")}
		if n := checkAll(in, all); n != 111 {
			b.Fatalf("%d conflicts, want 111", n)
		}
	}
}

// BenchmarkConflict1000Cold compiles all 1,001 filters in every op: the
// cost when the manager restarts and rebuilds its state.
func BenchmarkConflict1000Cold(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		all := existing(b, 1000, "x-user=user%d(-[a-z]+)?")
		in := Intercept{Workload: wl, Port: 8080, Kind: HTTP, Filter: mustFilter(b, []string{`x-user=(?i)user1\d*-admin`}, "")}
		if n := checkAll(in, all); n != 111 {
			b.Fatalf("%d conflicts, want 111", n)
		}
	}
}

// BenchmarkMatches is the agent's per-request cost.
func BenchmarkMatches(b *testing.B) {
	f := mustFilter(b, []string{"x-user=al.*", "x-env=dev|prod"}, "/api/.*")
	h := map[string][]string{"x-user": {"alice"}, "x-env": {"prod"}}
	get := func(name string) []string { return h[name] }
	b.ReportAllocs()
	for b.Loop() {
		if !f.Matches(get, "/api/v1/users") {
			b.Fatal("no match")
		}
	}
}

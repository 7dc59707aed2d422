package conflict

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// matchString runs the DFA on s, reading invalid UTF-8 as U+FFFD just as
// regexp does. Tests use it to hold the automaton to regexp's answers.
func (d *dfa) matchString(s string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := int32(0) // the start state
next:
	for _, r := range s {
		for _, e := range d.liveLocked(st) {
			if e.lo <= r && r <= e.hi {
				st = e.to
				continue next
			}
		}
		return false
	}
	return d.acceptsLocked(st)
}

// probes returns strings to try against reA and reB: every string of up to
// two runes over the runes of both regexes and some awkward ones, and
// random longer strings.
func probes(reA, reB string, seed uint64) []string {
	alpha := []rune{'a', 'b', 'A', '0', '_', '-', '/', ' ', '\n', 'é', 'É', '\u212a', 'k', utf8.RuneError}
	for _, r := range reA + reB {
		if len(alpha) >= 28 {
			break
		}
		if !slices.Contains(alpha, r) {
			alpha = append(alpha, r)
		}
	}
	out := []string{"", "\xff", "a\xffb"}
	for _, r := range alpha {
		out = append(out, string(r))
	}
	for _, r1 := range alpha {
		for _, r2 := range alpha {
			out = append(out, string([]rune{r1, r2}))
		}
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for range 200 {
		n := 3 + rng.IntN(6)
		rs := make([]rune, n)
		for i := range rs {
			rs[i] = alpha[rng.IntN(len(alpha))]
		}
		out = append(out, string(rs))
	}
	return out
}

var fuzzSeeds = [][2]string{
	{"al.*", ".*ice"}, {"alice", "bob"}, {"ali", "alice"}, {"ali.*", "alice"},
	{"[a-f]+", "[g-z]+"}, {"[a-f]+", "[e-z]+"}, {"alice|bob", "carol|bob"},
	{"/api/.*", "/web/.*"}, {"a*", "b*"}, {"(?i)ÄRGER", "ärger"}, {"(?i)k", "\u212a"},
	{"a.b", `a\nb`}, {"(?s)a.b", `a\nb`}, {`a\b.*`, "a[-b]"}, {`a\B.*`, "ab"},
	{`(?m)a$\n^b`, `a(?s:.)b`}, {`(?m)^$`, ""}, {`\b`, ""}, {`\Qa.b`, "a.b"},
	{`\x{D800}`, "."}, {`\x{FFFD}`, "."}, {`[^\x00-\x{10FFFF}]`, ".*"},
	{"(aa)+", "a(aa)*"}, {`\pL+`, `\p{Greek}`}, {"(?U)a+?b", "a{2,}b"},
	{`(?i)straße`, `STRASSE`}, {`\A\z`, ""}, {"x*$", "^x+"}, {`(a|b)*a(a|b){4}`, `(a|b)*b(a|b){5}`},
}

// FuzzConflict holds Conflict to regexp: symmetric answers, examples that
// both regexes match, shortest witnesses, and no common string among many
// probes when it says the regexes are disjoint. It also checks each
// automaton against regexp on every probe.
func FuzzConflict(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, reA, reB string) {
		// Header regexes are short; long inputs only slow the fuzzer down
		// (and its minimizer, which reports no executions meanwhile).
		if len(reA) > 256 || len(reB) > 256 {
			return
		}
		ra, errA := compileRegex(reA)
		rb, errB := compileRegex(reB)
		if errA != nil || errB != nil {
			return
		}
		if _, err := regexp.Compile(reA); err != nil {
			t.Fatalf("compileRegex accepts %q, regexp does not: %v", reA, err)
		}

		res, w := intersection(ra, rb)
		rres, rw := intersection(rb, ra)
		if res != rres || w != rw {
			t.Fatalf("asymmetric: (%q, %q) -> %v %q; reversed %v %q", reA, reB, res, w, rres, rw)
		}

		ps := probes(reA, reB, uint64(len(reA))<<32|uint64(len(reB)))
		for _, r := range []*regex{ra, rb} {
			if r.status == intersect && !r.re.MatchString(r.witness) {
				t.Fatalf("%q: witness %q does not match", r.src, r.witness)
			}
			if r.d == nil {
				continue
			}
			for _, p := range ps {
				if got, want := r.d.matchString(p), r.re.MatchString(p); got != want {
					t.Fatalf("%q on %q: automaton says %v, regexp %v", r.src, p, got, want)
				}
				if r.status == disjoint && r.re.MatchString(p) {
					t.Fatalf("%q: said to match nothing, matches %q", r.src, p)
				}
				if r.status == intersect && r.re.MatchString(p) && utf8.RuneCountInString(p) < utf8.RuneCountInString(r.witness) {
					t.Fatalf("%q: witness %q is not shortest: %q", r.src, r.witness, p)
				}
			}
		}

		both := func(s string) bool { return ra.re.MatchString(s) && rb.re.MatchString(s) }
		switch res {
		case intersect:
			if !both(w) {
				t.Fatalf("(%q, %q): witness %q does not match both", reA, reB, w)
			}
			for _, p := range ps {
				if both(p) && utf8.RuneCountInString(p) < utf8.RuneCountInString(w) {
					t.Fatalf("(%q, %q): witness %q is not shortest: %q", reA, reB, w, p)
				}
			}
		case disjoint:
			extra := []string{ra.witness, rb.witness, ra.lit, rb.lit}
			for _, p := range append(extra, ps...) {
				if both(p) {
					t.Fatalf("(%q, %q) said disjoint, both match %q", reA, reB, p)
				}
			}
		}

		// The same through the public API, when the filters are valid.
		fa, err := NewFilter([]string{"x-v=" + reA}, reA)
		if err != nil {
			return
		}
		fb, err := NewFilter([]string{"x-v=" + reB}, "")
		if err != nil {
			return
		}
		a := Intercept{Workload: wl, Port: 1, Kind: HTTP, Filter: fa}
		b := Intercept{Workload: wl, Port: 1, Kind: HTTP, Filter: fb}
		c, ex, why := Conflict(a, b)
		rc, rex, _ := Conflict(b, a)
		if c != rc {
			t.Fatalf("Conflict asymmetric for (%q, %q)", reA, reB)
		}
		if c != (res != disjoint) {
			t.Fatalf("Conflict = %v (%s) but intersection = %v", c, why, res)
		}
		for _, e := range []*Example{ex, rex} {
			if e != nil && !(fa.Matches(e.Header, e.Path) && fb.Matches(e.Header, e.Path)) {
				t.Fatalf("example %v (%s) not matched by both filters", e, why)
			}
		}
		if c && res == intersect && (ex == nil || ex.Headers["x-v"] != w) {
			t.Fatalf("Conflict example %v, want x-v: %q", ex, w)
		}
	})
}

// FuzzParseHeader checks that ParseHeader never panics and that what it
// accepts is a token name, a regex that compiles, and the input split at
// its first '='.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{"x-user=alice", "X-User=al.*", "x-user", "=a", "x y=z", "a=b=c", "x=(", `x=\Q(`, "x-ü=a", "x=\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, re, err := ParseHeader(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if name == "" || name != strings.ToLower(name) {
			t.Fatalf("name %q", name)
		}
		for i := 0; i < len(name); i++ {
			if !isTokenChar(name[i]) || unicode.IsUpper(rune(name[i])) {
				t.Fatalf("name %q has %q", name, name[i])
			}
		}
		if !strings.EqualFold(s[:len(name)], name) || s[len(name)] != '=' || s[len(name)+1:] != re {
			t.Fatalf("ParseHeader(%q) = %q, %q", s, name, re)
		}
		if _, err := regexp.Compile(re); err != nil {
			t.Fatalf("accepted regex %q does not compile: %v", re, err)
		}
		fl, err := NewFilter([]string{s}, "")
		if err != nil {
			t.Fatalf("NewFilter(%q): %v", s, err)
		}
		if fl.Headers[name] != re {
			t.Fatalf("NewFilter(%q).Headers = %v", s, fl.Headers)
		}
		// The filter takes a request carrying its own shortest value.
		w := fl.c.headers[0].re.witness
		if !fl.Matches(func(n string) []string {
			if n == name {
				return []string{w}
			}
			return nil
		}, "/") {
			t.Fatalf("%q: filter does not match its witness %q", s, w)
		}
	})
}

package conflict

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Kind is what an intercept takes of its workload.
type Kind uint8

const (
	// Global takes every request of the port. It is the zero Kind, the one
	// that conflicts the most.
	Global Kind = iota
	// HTTP takes the requests of the port that match the Filter.
	HTTP
	// Replace takes every port of the workload; the app gets nothing.
	Replace
)

func (k Kind) String() string {
	switch k {
	case Global:
		return "global"
	case HTTP:
		return "http"
	case Replace:
		return "replace"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Intercept is what Conflict needs to know of an intercept.
type Intercept struct {
	Workload string // "namespace/name"
	Port     uint16 // ignored for Replace
	Kind     Kind
	Filter   Filter // for Kind HTTP
}

// CheckWorkload checks that w names a workload as "namespace/name".
func CheckWorkload(w string) error {
	if ns, name, ok := strings.Cut(w, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("workload %q is not NAMESPACE/NAME", w)
	}
	return nil
}

// kind is the effective kind: an HTTP intercept without conditions is
// global, and an unknown Kind is treated as Replace, which conflicts with
// everything on the workload.
func (i *Intercept) kind() Kind {
	switch {
	case i.Kind == HTTP && i.Filter.IsEmpty():
		return Global
	case i.Kind > Replace:
		return Replace
	}
	return i.Kind
}

// Example is a request that two intercepts would both take.
type Example struct {
	Headers map[string]string // lower-case name -> value
	Path    string
}

// String renders e as `GET /path with x-user: alice, x-b: c`. Values that
// are empty or hold spaces, commas, quotes or unprintable characters are
// quoted. A nil Example is "any request".
func (e *Example) String() string {
	if e == nil {
		return "any request"
	}
	var b strings.Builder
	b.WriteString("GET ")
	b.WriteString(quote(e.Path))
	for i, name := range slices.Sorted(maps.Keys(e.Headers)) {
		if i == 0 {
			b.WriteString(" with ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(name)
		b.WriteString(": ")
		b.WriteString(quote(e.Headers[name]))
	}
	return b.String()
}

// Header returns the value of a header as a single field line, in the
// shape Filter.Matches takes.
func (e *Example) Header(name string) []string {
	if v, ok := e.Headers[strings.ToLower(name)]; ok {
		return []string{v}
	}
	return nil
}

// quote returns s, or s quoted when it would not read back unambiguously.
func quote(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r == ' ' || r == ',' || r == '"' || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// Conflict reports whether a and b conflict. When they do, ex is a request
// that matches both, and why says in one line what makes them conflict or
// not.
//
// ex is nil when any request would do (two global intercepts, a replace
// intercept against a global or replace one) and when the question was
// too complex to decide, which counts as a conflict. Against a global or
// replace intercept, ex is a request the HTTP filter takes.
func Conflict(a, b Intercept) (conflict bool, ex *Example, why string) {
	if a.Workload != b.Workload {
		return false, nil, fmt.Sprintf("different workloads %s and %s", a.Workload, b.Workload)
	}
	ka, kb := a.kind(), b.kind()
	if ka == Replace || kb == Replace {
		why = "replace intercept takes every port of " + a.Workload
		if ka != Replace || kb != Replace {
			port := a.Port
			if ka == Replace {
				port = b.Port
			}
			why += fmt.Sprintf(", port %d included", port)
			// Every request the other intercept takes, the replace one
			// takes too: show one if the other is an HTTP filter.
			ex = exampleOf(&a, &b)
		}
		return true, ex, why
	}
	if a.Port != b.Port {
		return false, nil, fmt.Sprintf("different ports %d and %d", a.Port, b.Port)
	}
	switch {
	case ka == Global && kb == Global:
		return true, nil, fmt.Sprintf("both intercepts are global: any request on port %d matches both", a.Port)
	case ka == Global || kb == Global:
		return true, exampleOf(&a, &b), fmt.Sprintf("global intercept takes every request on port %d", a.Port)
	}
	return httpConflict(a.Filter.compiledForm(), b.Filter.compiledForm())
}

// exampleOf returns a request taken by the one HTTP intercept among a and
// b, or nil when neither is HTTP or its filter has no known member.
func exampleOf(a, b *Intercept) *Example {
	f := &a.Filter
	switch {
	case a.kind() == HTTP:
	case b.kind() == HTTP:
		f = &b.Filter
	default:
		return nil
	}
	c := f.compiledForm()
	if c.err != nil {
		return nil
	}
	ex := &Example{Headers: make(map[string]string, len(c.headers))}
	for _, h := range c.headers {
		if h.re.status != intersect {
			return nil
		}
		ex.Headers[h.name] = h.re.witness
	}
	p, ok := pathExample(c.path, nil, "")
	if !ok {
		return nil
	}
	ex.Path = p
	return ex
}

// pathExample returns a path that a and b (either may be nil: any path)
// match: "/" when they both do, or else common, a shortest common path
// found by the caller, or the shortest path of the one that is not nil.
func pathExample(a, b *regex, common string) (string, bool) {
	if (a == nil || a.re.MatchString("/")) && (b == nil || b.re.MatchString("/")) {
		return "/", true
	}
	switch {
	case a != nil && b != nil:
		return common, true
	case b != nil:
		a = b
	}
	return a.witness, a.status == intersect
}

// intersection decides whether a and b have a common member and returns a
// shortest one.
func intersection(a, b *regex) (outcome, string) {
	switch {
	case a.isLit:
		if b.re.MatchString(a.lit) {
			return intersect, a.lit
		}
		return disjoint, ""
	case b.isLit:
		if a.re.MatchString(b.lit) {
			return intersect, b.lit
		}
		return disjoint, ""
	case a.status == disjoint || b.status == disjoint:
		return disjoint, ""
	case a.d == nil || b.d == nil:
		return undecided, ""
	}
	return search(a.d, b.d)
}

// httpConflict decides two HTTP filters.
func httpConflict(a, b *compiled) (bool, *Example, string) {
	switch {
	case a.err != nil:
		return true, nil, fmt.Sprintf("cannot check a filter, treated as conflicting: %v", a.err)
	case b.err != nil:
		return true, nil, fmt.Sprintf("cannot check a filter, treated as conflicting: %v", b.err)
	}
	// A condition only one filter has still restricts the requests that
	// filter takes: if nothing satisfies it, the filter takes nothing.
	for _, c := range [2]*compiled{a, b} {
		for _, h := range c.headers {
			if h.re.status == disjoint {
				return false, nil, fmt.Sprintf("header %s: regex %s matches no value", h.name, showRE(h.re.src))
			}
		}
		if c.path != nil && c.path.status == disjoint {
			return false, nil, fmt.Sprintf("path regex %s matches no path", showRE(c.path.src))
		}
	}

	// The conditions both filters have decide. Literal ones cost a regexp
	// match, the others a product search: try the cheap ones first, as one
	// disjoint condition settles the question.
	type cond struct {
		name   string // header name, "" for the path
		ra, rb *regex
		res    outcome
		w      string
	}
	var buf [8]cond
	conds := buf[:0]
	// Both header lists are sorted by name.
	for i, j := 0, 0; i < len(a.headers) && j < len(b.headers); {
		switch ha, hb := &a.headers[i], &b.headers[j]; {
		case ha.name < hb.name:
			i++
		case ha.name > hb.name:
			j++
		default:
			conds = append(conds, cond{name: ha.name, ra: ha.re, rb: hb.re})
			i++
			j++
		}
	}
	if a.path != nil && b.path != nil {
		conds = append(conds, cond{ra: a.path, rb: b.path})
	}
	for pass := range 2 {
		for i := range conds {
			c := &conds[i]
			if cheap := c.ra.isLit || c.rb.isLit; cheap != (pass == 0) {
				continue
			}
			if c.res, c.w = intersection(c.ra, c.rb); c.res != disjoint {
				continue
			}
			// The common answer when a new intercept is checked against
			// many others: build it with one allocation.
			var mb [160]byte
			m := append(mb[:0], "path: regexes "...)
			if c.name != "" {
				m = append(append(append(mb[:0], "header "...), c.name...), ": regexes "...)
			}
			m = append(appendRE(append(appendRE(m, c.ra.src), " and "...), c.rb.src), " never match the same "...)
			if c.name == "" {
				return false, nil, string(append(m, "path"...))
			}
			return false, nil, string(append(m, "value"...))
		}
	}

	ex := &Example{Headers: make(map[string]string, len(a.headers)+len(b.headers))}
	var shared, unsure []string
	var common string
	for _, c := range conds {
		label := "header " + c.name
		if c.name == "" {
			label, common = "path", c.w
		} else {
			ex.Headers[c.name] = c.w
		}
		if c.res == undecided {
			unsure = append(unsure, label)
		} else {
			shared = append(shared, fmt.Sprintf("%s: both match %q", label, c.w))
		}
	}
	if len(unsure) > 0 {
		return true, nil, strings.Join(unsure, ", ") + ": regexes too complex to compare exactly; treated as conflicting"
	}

	// Headers that only one filter names: the request carries them too.
	for _, c := range [2]*compiled{a, b} {
		for _, h := range c.headers {
			if _, ok := ex.Headers[h.name]; ok {
				continue
			}
			if h.re.status != intersect {
				return true, nil, fmt.Sprintf("header %s: regex %s too complex to analyse; treated as conflicting", h.name, showRE(h.re.src))
			}
			ex.Headers[h.name] = h.re.witness
		}
	}
	p, ok := pathExample(a.path, b.path, common)
	if !ok {
		return true, nil, "path regex too complex to analyse; treated as conflicting"
	}
	ex.Path = p
	if len(shared) == 0 {
		return true, ex, "no header or path condition in common: a request can carry the headers of both filters"
	}
	return true, ex, strings.Join(shared, "; ")
}

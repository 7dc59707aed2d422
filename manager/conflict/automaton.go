package conflict

import (
	"cmp"
	"encoding/binary"
	"regexp/syntax"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// Bounds of one search. Exceeding any of them makes the search undecided,
// which callers treat as a conflict.
const (
	// maxProductStates bounds the product states a search discovers.
	maxProductStates = 100_000
	// maxWork bounds the sum, over explored product states, of the
	// number of intervals of both DFAs times one plus the sizes of the
	// states' thread sets: what computing every transition afresh would
	// cost. It is counted the same way whether the DFA caches are cold or
	// warm and whichever regex comes first.
	maxWork = 20_000_000
	// maxProgInsts bounds the program size of a regex that is analysed.
	// State keys store pcs in 16 bits.
	maxProgInsts = 5_000
	// maxCacheBytes is the size past which a DFA cache is emptied at the
	// start of the next search.
	maxCacheBytes = 16 << 20
)

// outcome is the answer of a search.
type outcome uint8

const (
	disjoint  outcome = iota // no common string
	intersect                // a common string exists; the search found a shortest one
	undecided                // a bound was exceeded
)

// ctxClass classifies the rune before a position, as far as the regex's
// empty-width assertions can tell them apart.
type ctxClass uint8

const (
	clsBegin ctxClass = iota // no rune: start of text
	clsNL                    // '\n'
	clsWord                  // ASCII word character
	clsOther                 // anything else
)

// classRune is a representative of each class for syntax.EmptyOpContext.
var classRune = [...]rune{clsBegin: -1, clsNL: '\n', clsWord: 'a', clsOther: ' '}

// ctxMode says which classes a regex's assertions distinguish.
type ctxMode uint8

const (
	ctxText ctxMode = iota // only \A/\z (^/$ without (?m)): begin or not
	ctxLine                // also (?m)^ and (?m)$: newline or not
	ctxWord                // also \b and \B: word character or not
)

// span is an inclusive range of interval indexes.
type span struct{ lo, hi int32 }

// inst is a program instruction with its rune set as interval spans.
type inst struct {
	op    syntax.InstOp
	out   uint32
	arg   uint32
	spans []span // consuming instructions only; sorted, disjoint
}

// has reports whether interval j is in the instruction's rune set.
func (in *inst) has(j int32) bool {
	sp := in.spans
	lo, hi := 0, len(sp)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if sp[m].hi < j {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < len(sp) && sp[lo].lo <= j
}

// dstate is a state of the lazy DFA: the program counters waiting before
// the ε-closure (which needs the next rune) and the class of the previous
// rune.
type dstate struct {
	set   []uint32 // sorted
	class ctxClass
	acc   int8        // 0 unknown, 1 rejects at end of text, 2 accepts
	live  []edge      // transitions to states with threads; valid when liveK
	liveK bool        // live computed
	cons  [4][]uint32 // consuming pcs after closure, by class of the next rune; freed once live is known
	consK uint8       // bit c set: cons[c] computed
}

// edge is a transition on the runes lo..hi (inclusive, no surrogates).
type edge struct {
	lo, hi rune
	to     int32
}

// dfa is a lazily determinised program. Everything below mu is a cache
// that any search may extend.
type dfa struct {
	id     uint64 // lock order
	start  uint32
	mode   ctxMode
	insts  []inst
	bounds []rune // interval j is [bounds[j], bounds[j+1]); last is MaxRune+1

	mu     sync.Mutex
	states []dstate         // guarded by mu
	index  map[string]int32 // guarded by mu; key of states[i] -> i
	bytes  int              // guarded by mu; rough size of the cache
	mark   []uint32         // guarded by mu; scratch for closures
	gen    uint32           // guarded by mu
	stack  []uint32         // guarded by mu
	buf    []uint32         // guarded by mu
	key    []byte           // guarded by mu
}

var dfaIDs atomic.Uint64

// newDFA prepares prog for determinisation. It returns nil when the
// program is too large to analyse.
func newDFA(prog *syntax.Prog) *dfa {
	if len(prog.Inst) > maxProgInsts {
		return nil
	}
	d := &dfa{
		id:    dfaIDs.Add(1),
		start: uint32(prog.Start),
		insts: make([]inst, len(prog.Inst)),
		mark:  make([]uint32, len(prog.Inst)),
	}
	ranges := make([][]rune, len(prog.Inst))
	cuts := []rune{0, 0xD800, 0xE000, unicode.MaxRune + 1}
	for pc := range prog.Inst {
		in := &prog.Inst[pc]
		d.insts[pc] = inst{op: in.Op, out: in.Out, arg: in.Arg}
		switch in.Op {
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			r := runeRanges(in)
			ranges[pc] = r
			for i := 0; i < len(r); i += 2 {
				cuts = append(cuts, r[i], r[i+1]+1)
			}
		case syntax.InstEmptyWidth:
			op := syntax.EmptyOp(in.Arg)
			if op&(syntax.EmptyWordBoundary|syntax.EmptyNoWordBoundary) != 0 {
				d.mode = ctxWord
			} else if op&(syntax.EmptyBeginLine|syntax.EmptyEndLine) != 0 {
				d.mode = max(d.mode, ctxLine)
			}
		}
	}
	if d.mode >= ctxLine {
		cuts = append(cuts, '\n', '\n'+1)
	}
	if d.mode == ctxWord {
		cuts = append(cuts, '0', '9'+1, 'A', 'Z'+1, '_', '_'+1, 'a', 'z'+1)
	}
	slices.Sort(cuts)
	d.bounds = slices.Compact(cuts)
	for pc, r := range ranges {
		var sp []span
		for i := 0; i < len(r); i += 2 {
			lo := d.interval(r[i])
			hi := d.interval(r[i+1]+1) - 1
			if n := len(sp); n > 0 && sp[n-1].hi+1 >= lo {
				sp[n-1].hi = max(sp[n-1].hi, hi)
				continue
			}
			sp = append(sp, span{lo, hi})
		}
		d.insts[pc].spans = sp
	}
	d.resetLocked()
	return d
}

// runeRanges returns the rune set of a consuming instruction as sorted
// inclusive [lo, hi] pairs, with case folding spelled out.
func runeRanges(in *syntax.Inst) []rune {
	switch in.Op {
	case syntax.InstRuneAny:
		return []rune{0, unicode.MaxRune}
	case syntax.InstRuneAnyNotNL:
		return []rune{0, '\n' - 1, '\n' + 1, unicode.MaxRune}
	case syntax.InstRune1:
		return []rune{in.Rune[0], in.Rune[0]}
	}
	// InstRune, as Inst.MatchRunePos reads it.
	if len(in.Rune) == 1 {
		r0 := in.Rune[0]
		rs := []rune{r0}
		if syntax.Flags(in.Arg)&syntax.FoldCase != 0 {
			for r := unicode.SimpleFold(r0); r != r0; r = unicode.SimpleFold(r) {
				rs = append(rs, r)
			}
			slices.Sort(rs)
		}
		out := make([]rune, 0, 2*len(rs))
		for _, r := range rs {
			out = append(out, r, r)
		}
		return out
	}
	type pair struct{ lo, hi rune }
	ps := make([]pair, 0, len(in.Rune)/2)
	for i := 0; i+1 < len(in.Rune); i += 2 {
		ps = append(ps, pair{in.Rune[i], min(in.Rune[i+1], unicode.MaxRune)})
	}
	slices.SortFunc(ps, func(a, b pair) int { return cmp.Compare(a.lo, b.lo) })
	out := make([]rune, 0, 2*len(ps))
	for _, p := range ps {
		if p.lo <= p.hi {
			out = append(out, p.lo, p.hi)
		}
	}
	return out
}

// interval returns the index of the interval starting at or containing r.
func (d *dfa) interval(r rune) int32 {
	return int32(sort.Search(len(d.bounds), func(i int) bool { return d.bounds[i] > r }) - 1)
}

// classOf returns the class of r as far as d's assertions care.
func (d *dfa) classOf(r rune) ctxClass {
	switch {
	case d.mode >= ctxLine && r == '\n':
		return clsNL
	case d.mode == ctxWord && syntax.IsWordChar(r):
		return clsWord
	}
	return clsOther
}

// resetLocked empties the cache; state 0 is the start state.
func (d *dfa) resetLocked() {
	d.states = d.states[:0]
	d.index = make(map[string]int32)
	d.bytes = 0
	d.internLocked([]uint32{d.start}, clsBegin)
}

// bumpLocked starts a new generation of marks.
func (d *dfa) bumpLocked() {
	d.gen++
	if d.gen == 0 {
		clear(d.mark)
		d.gen = 1
	}
}

// internLocked returns the id of the state (set, class), adding it.
func (d *dfa) internLocked(set []uint32, class ctxClass) int32 {
	k := append(d.key[:0], byte(class))
	for _, pc := range set {
		k = binary.LittleEndian.AppendUint16(k, uint16(pc)) // pc < maxProgInsts
	}
	d.key = k
	if id, ok := d.index[string(k)]; ok {
		return id
	}
	id := int32(len(d.states))
	d.states = append(d.states, dstate{set: slices.Clone(set), class: class})
	d.index[string(k)] = id
	d.bytes += 2*len(k) + 160
	return id
}

// closureLocked follows ε-moves from set under the assertion flags. It
// appends the consuming pcs reached to cons and reports whether Match was
// reached.
func (d *dfa) closureLocked(set []uint32, flags syntax.EmptyOp, cons []uint32) ([]uint32, bool) {
	d.bumpLocked()
	stack := d.stack[:0]
	for i := len(set) - 1; i >= 0; i-- {
		stack = append(stack, set[i])
	}
	match := false
	for len(stack) > 0 {
		pc := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if d.mark[pc] == d.gen {
			continue
		}
		d.mark[pc] = d.gen
		in := &d.insts[pc]
		switch in.op {
		case syntax.InstAlt, syntax.InstAltMatch:
			stack = append(stack, in.arg, in.out)
		case syntax.InstCapture, syntax.InstNop:
			stack = append(stack, in.out)
		case syntax.InstEmptyWidth:
			if syntax.EmptyOp(in.arg)&^flags == 0 {
				stack = append(stack, in.out)
			}
		case syntax.InstMatch:
			match = true
		case syntax.InstFail:
		default:
			cons = append(cons, pc)
		}
	}
	d.stack = stack
	return cons, match
}

// acceptsLocked reports whether state s accepts at the end of the text.
func (d *dfa) acceptsLocked(s int32) bool {
	st := &d.states[s]
	if st.acc == 0 {
		_, m := d.closureLocked(st.set, syntax.EmptyOpContext(classRune[st.class], -1), d.buf[:0])
		st.acc = 1
		if m {
			st.acc = 2
		}
	}
	return st.acc == 2
}

// dead reports whether s has no threads left.
func (d *dfa) dead(s int32) bool { return len(d.states[s].set) == 0 }

// stepLocked returns the state after reading a rune of interval j in s.
func (d *dfa) stepLocked(s int32, j int32) int32 {
	st := &d.states[s]
	r := d.bounds[j]
	nc := d.classOf(r)
	if st.consK&(1<<nc) == 0 {
		// Any rune of the class gives the same flags: the interval cuts
		// and the mode keep everything the assertions look at.
		c, _ := d.closureLocked(st.set, syntax.EmptyOpContext(classRune[st.class], classRune[nc]), nil)
		st.cons[nc] = c
		st.consK |= 1 << nc
		d.bytes += 4 * len(c)
	}
	d.bumpLocked()
	buf := d.buf[:0]
	for _, pc := range st.cons[nc] {
		in := &d.insts[pc]
		if in.has(j) && d.mark[in.out] != d.gen {
			d.mark[in.out] = d.gen
			buf = append(buf, in.out)
		}
	}
	slices.Sort(buf)
	d.buf = buf
	return d.internLocked(buf, nc)
}

// liveLocked returns the transitions of s that leave threads alive, by
// rune range in increasing order; neighbouring intervals with the same
// target are one edge.
func (d *dfa) liveLocked(s int32) []edge {
	if st := &d.states[s]; st.liveK {
		return st.live
	}
	var live []edge
	for j := range int32(len(d.bounds) - 1) {
		lo, hi := d.bounds[j], d.bounds[j+1]-1
		if lo >= 0xD800 && lo < 0xE000 {
			continue // surrogates: no text holds them
		}
		t := d.stepLocked(s, j) // may move d.states
		if d.dead(t) {
			continue
		}
		if n := len(live); n > 0 && live[n-1].to == t && live[n-1].hi+1 == lo {
			live[n-1].hi = hi
			continue
		}
		live = append(live, edge{lo, hi, t})
	}
	live = slices.Clip(live)
	st := &d.states[s]
	st.live, st.liveK = live, true
	// The closures served only to compute the edges.
	for _, c := range st.cons {
		d.bytes -= 4 * len(c)
	}
	st.cons, st.consK = [4][]uint32{}, 0
	d.bytes += 12 * len(live)
	return live
}

// step is a transition of the product: a rune range on which every DFA
// moves to one state.
type step struct {
	rep  rune  // the rune the witness uses
	rank uint8 // preference; lower first
	to   [2]int32
}

// preferred lists rune ranges in the order witnesses should use them.
var preferred = [...]struct {
	lo, hi rune
	rank   uint8
}{
	{'a', 'z', 0}, {'0', '9', 1}, {'A', 'Z', 2},
	{'-', '-', 3}, {'.', '.', 3}, {'/', '/', 3}, {'_', '_', 3}, {'~', '~', 3},
	{'!', '~', 4}, {' ', ' ', 5},
}

// pick chooses the representative of [lo, hi] and its rank.
func pick(lo, hi rune) (rune, uint8) {
	for _, p := range preferred {
		if a, b := max(lo, p.lo), min(hi, p.hi); a <= b {
			return a, p.rank
		}
	}
	// A few tries only: unicode.IsPrint is slow above Latin-1, and this
	// runs for every interval of every search.
	start := max(lo, 0xA1)
	for r := start; r <= hi && r < start+4; r++ {
		if utf8.ValidRune(r) && unicode.IsPrint(r) {
			return r, 6
		}
	}
	return lo, 7
}

// steps appends the product transitions out of (la, lb) to out in order of
// preference. lb is nil for a search of one DFA.
func steps(out []step, la, lb []edge, two bool) []step {
	out = out[:0]
	if !two {
		for _, e := range la {
			rep, rank := pick(e.lo, e.hi)
			out = append(out, step{rep: rep, rank: rank, to: [2]int32{e.to}})
		}
	} else {
		for i, j := 0, 0; i < len(la) && j < len(lb); {
			a, b := la[i], lb[j]
			if lo, hi := max(a.lo, b.lo), min(a.hi, b.hi); lo <= hi {
				rep, rank := pick(lo, hi)
				out = append(out, step{rep: rep, rank: rank, to: [2]int32{a.to, b.to}})
			}
			if a.hi < b.hi {
				i++
			} else {
				j++
			}
		}
	}
	slices.SortFunc(out, func(a, b step) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		return cmp.Compare(a.rep, b.rep)
	})
	return out
}

// lock locks the DFAs in id order, each once.
func lock(ds []*dfa) {
	if len(ds) == 2 && ds[0] != ds[1] {
		a, b := ds[0], ds[1]
		if b.id < a.id {
			a, b = b, a
		}
		a.mu.Lock()
		b.mu.Lock()
		return
	}
	ds[0].mu.Lock()
}

// unlock undoes lock.
func unlock(ds []*dfa) {
	ds[0].mu.Unlock()
	if len(ds) == 2 && ds[0] != ds[1] {
		ds[1].mu.Unlock()
	}
}

// search looks for a shortest string accepted by every DFA in ds (one or
// two). It returns the string when the outcome is intersect.
func search(ds ...*dfa) (outcome, string) {
	lock(ds)
	defer unlock(ds)
	for i, d := range ds {
		if i == 1 && d == ds[0] {
			break
		}
		if d.bytes > maxCacheBytes {
			d.resetLocked()
		}
	}
	two := len(ds) == 2

	type node struct {
		s      [2]int32
		parent int32
		via    rune
	}
	key := func(s [2]int32) uint64 { return uint64(uint32(s[0]))<<32 | uint64(uint32(s[1])) }
	accepts := func(s [2]int32) bool {
		for k, d := range ds {
			if !d.acceptsLocked(s[k]) {
				return false
			}
		}
		return true
	}
	witness := func(nodes []node, i int32) string {
		var rs []rune
		for ; nodes[i].parent >= 0; i = nodes[i].parent {
			rs = append(rs, nodes[i].via)
		}
		slices.Reverse(rs)
		return string(rs)
	}

	// Most searches are small: keep them on the stack, and look nodes up
	// by scanning until there are too many.
	const small = 32
	var nbuf [small]node
	var sbuf [small]step
	nodes := append(nbuf[:0], node{parent: -1}) // state 0 is every DFA's start state
	if accepts(nodes[0].s) {
		return intersect, ""
	}
	var seen map[uint64]int32
	known := func(k uint64) bool {
		if seen != nil {
			_, ok := seen[k]
			return ok
		}
		for i := range nodes {
			if key(nodes[i].s) == k {
				return true
			}
		}
		return false
	}
	// Work is charged as if every transition of every state were computed
	// afresh, so that the bound does not depend on what the caches hold.
	perState := 1
	for _, d := range ds {
		perState += len(d.bounds)
	}
	work := 0
	out := sbuf[:0]
	for qi := int32(0); int(qi) < len(nodes); qi++ {
		cur := nodes[qi].s
		cost := 1
		for k, d := range ds {
			cost += len(d.states[cur[k]].set)
		}
		work += perState * cost
		if work > maxWork {
			return undecided, ""
		}
		la := ds[0].liveLocked(cur[0])
		var lb []edge
		if two {
			lb = ds[1].liveLocked(cur[1])
		}
		out = steps(out, la, lb, two)
		for _, st := range out {
			k := key(st.to)
			if known(k) {
				continue
			}
			if len(nodes) >= maxProductStates {
				return undecided, ""
			}
			id := int32(len(nodes))
			nodes = append(nodes, node{s: st.to, parent: qi, via: st.rep})
			switch {
			case seen != nil:
				seen[k] = id
			case len(nodes) > small:
				seen = make(map[uint64]int32, 4*small)
				for i := range nodes {
					seen[key(nodes[i].s)] = int32(i)
				}
			}
			// Nodes are discovered in order of depth, so the first
			// accepting one is a shortest witness.
			if accepts(st.to) {
				return intersect, witness(nodes, id)
			}
		}
	}
	return disjoint, ""
}

package conflict

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Filter selects the HTTP requests of an intercept. Every condition must
// match; a Filter without conditions takes every request (a global
// intercept).
//
// Build filters with [Filter.Compile] (from the wire, as the manager and
// the agent do) or [NewFilter] (from NAME=REGEX strings): both compile the regexes once and keep them in the Filter. A
// Filter built as a literal still works, but recompiles on every call.
// Copies share the compiled form and are safe for concurrent use. Changing
// Headers or Path after compiling is noticed and makes the Filter recompile
// on every call too.
type Filter struct {
	Headers map[string]string // lower-cased header name -> regex (anchored)
	Path    string            // regex (anchored), "" = any

	c *compiled
}

// compiled is the compiled form of a Filter. It is immutable apart from the
// DFA caches inside its regexes, which guard themselves.
type compiled struct {
	headers []header // sorted by name
	path    *regex   // nil: any path
	src     string   // the Path compiled
	err     error    // why a literal Filter does not compile
}

// header is one header condition.
type header struct {
	name string // lower-case
	key  string // the key in Filter.Headers (differs in case only)
	re   *regex
}

// regex is a compiled, anchored regex.
type regex struct {
	src string
	re  *regexp.Regexp // ^(?:src)$

	lit   string // the one string the regex matches, when isLit
	isLit bool
	d     *dfa // nil when isLit or too large to analyse

	// status and witness describe the language: disjoint means it is empty,
	// intersect that witness is a shortest member.
	status  outcome
	witness string
}

// compileRegex compiles src anchored and analyses its language.
func compileRegex(src string) (*regex, error) {
	tree, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return nil, describeSyntaxError(err)
	}
	wrapped := "^(?:" + src + ")$"
	re, err := regexp.Compile(wrapped)
	if err != nil {
		// An unterminated \Q swallows the closing ")$"; end it first.
		// Anything else that compiles alone also compiles wrapped, except
		// nesting at the parser's depth limit.
		wrapped = "^(?:" + src + `\E)$`
		var err2 error
		if re, err2 = regexp.Compile(wrapped); err2 != nil {
			return nil, describeSyntaxError(err)
		}
	}
	r := &regex{src: src, re: re}
	if s, ok := literal(tree.Simplify()); ok {
		r.lit, r.isLit = s, true
		r.status, r.witness = intersect, s
		return r, nil
	}
	// The automaton runs the very program regexp runs for Matches.
	wt, err := syntax.Parse(wrapped, syntax.Perl)
	if err != nil {
		return nil, describeSyntaxError(err)
	}
	prog, err := syntax.Compile(wt.Simplify())
	if err != nil {
		return nil, describeSyntaxError(err)
	}
	if r, ok := surrogate(prog); ok {
		// Go's one-pass matcher compares literal prefixes as UTF-8, where
		// a surrogate turns into U+FFFD: ^\x{D800}$ matches "\uFFFD" but
		// ^(?:\x{D800}|b)$ does not. Refuse rather than disagree.
		return nil, fmt.Errorf("%U is a surrogate, not a character; no text contains it", r)
	}
	if r.d = newDFA(prog); r.d == nil {
		r.status = undecided
		return r, nil
	}
	r.status, r.witness = search(r.d)
	return r, nil
}

// surrogate returns a surrogate that prog matches as a single-rune literal.
func surrogate(prog *syntax.Prog) (rune, bool) {
	for i := range prog.Inst {
		in := &prog.Inst[i]
		if (in.Op == syntax.InstRune1 || in.Op == syntax.InstRune && len(in.Rune) == 1) && !utf8.ValidRune(in.Rune[0]) {
			return in.Rune[0], true
		}
	}
	return 0, false
}

// regexError is a *syntax.Error said once: "what at `where`".
type regexError struct{ err *syntax.Error }

func (e regexError) Error() string { return fmt.Sprintf("%s at `%s`", e.err.Code, e.err.Expr) }
func (e regexError) Unwrap() error { return e.err }

// describeSyntaxError shortens a *syntax.Error to regexError.
func describeSyntaxError(err error) error {
	if se, ok := errors.AsType[*syntax.Error](err); ok {
		return regexError{se}
	}
	return err
}

// showRE quotes a regex for messages, in backquotes when it can so that
// its backslashes read as written.
func showRE(s string) string { return string(appendRE(nil, s)) }

// appendRE appends showRE(s) to b.
func appendRE(b []byte, s string) []byte {
	if strconv.CanBackquote(s) {
		return append(append(append(b, '`'), s...), '`')
	}
	return strconv.AppendQuote(b, s)
}

// literal returns the one string re matches, if it is a literal without
// case folding of any folding rune.
func literal(re *syntax.Regexp) (string, bool) {
	for re.Op == syntax.OpCapture {
		re = re.Sub[0]
	}
	switch re.Op {
	case syntax.OpEmptyMatch:
		return "", true
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if !utf8.ValidRune(r) {
				return "", false // a surrogate: compileRegex refuses it
			}
			if re.Flags&syntax.FoldCase != 0 && unicode.SimpleFold(r) != r {
				return "", false
			}
		}
		return string(re.Rune), true
	}
	return "", false
}

// compileChecked is compileRegex for a regex from the user: it must also be
// analysable.
func compileChecked(src string) (*regex, error) {
	r, err := compileRegex(src)
	if err == nil {
		err = r.analysable()
	}
	return r, err
}

// analysable checks that a regex from the user can take part in conflict
// checks: small enough, and with a member that a search finds.
func (r *regex) analysable() error {
	switch {
	case r.isLit:
		return nil
	case r.d == nil:
		return fmt.Errorf("too large to check for conflicts (more than %d instructions); simplify it", maxProgInsts)
	case r.status == undecided:
		return errors.New("too complex to check for conflicts; simplify it")
	case r.status == disjoint:
		return errors.New("matches no value at all")
	}
	return nil
}

// isTokenChar reports whether c may appear in an RFC 7230 token.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// checkName validates a header name and returns it lower-cased.
func checkName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty header name")
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			r, _ := utf8.DecodeRuneInString(name[i:])
			return "", fmt.Errorf("header name %q: character %q at offset %d is not allowed (RFC 7230 token: letters, digits and !#$%%&'*+-.^_`|~)", name, r, i)
		}
	}
	return strings.ToLower(name), nil
}

// ParseHeader parses "NAME=REGEX", the value of --http-header. It returns
// the name lower-cased and the regex as given, after checking that the name
// is an RFC 7230 token and that the regex compiles and can be analysed.
// The regex is anchored: it must match the whole header value.
func ParseHeader(s string) (name, re string, err error) {
	name, re, _, err = parseHeader(s)
	return name, re, err
}

func parseHeader(s string) (string, string, *regex, error) {
	n, re, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", nil, fmt.Errorf("header condition %s: missing '=': want NAME=REGEX, e.g. x-user=alice", showRE(s))
	}
	name, err := checkName(n)
	if err != nil {
		return "", "", nil, fmt.Errorf("header condition %s: %w", showRE(s), err)
	}
	r, err := compileChecked(re)
	if err != nil {
		return "", "", nil, fmt.Errorf("header %s: regex %s (at offset %d of %s): %w", name, showRE(re), len(n)+1, showRE(s), err)
	}
	return name, re, r, nil
}

// NewFilter builds a filter from --http-header values ("NAME=REGEX", each
// name at most once) and a path regex ("" = any path). A filter without
// conditions is valid; the caller makes it a global intercept. Errors name
// the header, or the path, that is wrong.
func NewFilter(headers []string, path string) (Filter, error) {
	conds := make([]header, 0, len(headers))
	for _, h := range headers {
		name, _, r, err := parseHeader(h)
		if err != nil {
			return Filter{}, err
		}
		conds = append(conds, header{name: name, key: name, re: r})
	}
	return build(conds, path)
}

// build checks the conditions for duplicates, compiles the path and
// returns the compiled Filter.
func build(conds []header, path string) (Filter, error) {
	f := Filter{Path: path}
	c := &compiled{src: path}
	at := make(map[string]int, len(conds))
	for i, h := range conds {
		if j, ok := at[h.name]; ok {
			return Filter{}, fmt.Errorf("header %s given twice (conditions %d and %d); a request has one value per header, so combine the regexes into one", h.name, j+1, i+1)
		}
		at[h.name] = i
		if f.Headers == nil {
			f.Headers = make(map[string]string, len(conds))
		}
		f.Headers[h.name] = h.re.src
		c.headers = append(c.headers, h)
	}
	if path != "" {
		r, err := compileChecked(path)
		if err != nil {
			return Filter{}, fmt.Errorf("path regex %s: %w", showRE(path), err)
		}
		c.path = r
	}
	slices.SortFunc(c.headers, func(a, b header) int { return strings.Compare(a.name, b.name) })
	f.c = c
	return f, nil
}

// Compile returns f with its regexes compiled and its header names
// lower-cased, checking it as NewFilter does. Use it on filters that
// arrive as data.
func (f Filter) Compile() (Filter, error) {
	conds := make([]header, 0, len(f.Headers))
	for _, key := range slices.Sorted(maps.Keys(f.Headers)) {
		name, err := checkName(key)
		if err != nil {
			return Filter{}, err
		}
		src := f.Headers[key]
		r, err := compileChecked(src)
		if err != nil {
			return Filter{}, fmt.Errorf("header %s: regex %s: %w", name, showRE(src), err)
		}
		conds = append(conds, header{name: name, key: name, re: r})
	}
	return build(conds, f.Path)
}

// IsEmpty reports whether f has no condition, which makes it global.
func (f Filter) IsEmpty() bool { return len(f.Headers) == 0 && f.Path == "" }

// Equal reports whether f and g have the same conditions. (Filter holds a
// map, so == does not compile.)
func (f Filter) Equal(g Filter) bool {
	return f.Path == g.Path && maps.Equal(f.Headers, g.Headers)
}

// String renders f as CLI flags.
func (f Filter) String() string {
	if f.IsEmpty() {
		return "(all requests)"
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(f.Headers)) {
		parts = append(parts, "--http-header "+shellQuote(name+"="+f.Headers[name]))
	}
	if f.Path != "" {
		parts = append(parts, "--http-path "+shellQuote(f.Path))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// current reports whether c was compiled from f's present conditions.
func (c *compiled) current(f *Filter) bool {
	if c.src != f.Path || len(c.headers) != len(f.Headers) {
		return false
	}
	for _, h := range c.headers {
		if v, ok := f.Headers[h.key]; !ok || v != h.re.src {
			return false
		}
	}
	return true
}

// compiledForm returns f's compiled form, compiling now when f was not
// compiled or has changed since.
func (f *Filter) compiledForm() *compiled {
	if f.c != nil && f.c.current(f) {
		return f.c
	}
	c := &compiled{src: f.Path}
	seen := make(map[string]bool, len(f.Headers))
	for _, key := range slices.Sorted(maps.Keys(f.Headers)) {
		name, err := checkName(key)
		if err == nil && seen[name] {
			err = fmt.Errorf("header %s appears twice, in different case", name)
		}
		if err != nil {
			return &compiled{err: err}
		}
		seen[name] = true
		r, err := compileRegex(f.Headers[key])
		if err != nil {
			return &compiled{err: fmt.Errorf("header %s: regex %s: %w", name, showRE(f.Headers[key]), err)}
		}
		c.headers = append(c.headers, header{name: name, key: key, re: r})
	}
	if f.Path != "" {
		r, err := compileRegex(f.Path)
		if err != nil {
			return &compiled{err: fmt.Errorf("path regex %s: %w", showRE(f.Path), err)}
		}
		c.path = r
	}
	slices.SortFunc(c.headers, func(a, b header) int { return strings.Compare(a.name, b.name) })
	return c
}

// Matches reports whether a request matches f. headers returns the field
// values of a header by lower-case name (http.Header.Values will do); the
// condition is tested against the values joined with ", ", and an absent
// header fails it. path is the request path as the agent routes on it.
// A filter that does not compile matches nothing.
//
// Matches agrees with Conflict: every example Conflict returns matches both
// filters.
func (f Filter) Matches(headers func(name string) []string, path string) bool {
	c := f.compiledForm()
	if c.err != nil {
		return false
	}
	if c.path != nil && !c.path.re.MatchString(path) {
		return false
	}
	for i := range c.headers {
		h := &c.headers[i]
		var vs []string
		if headers != nil {
			vs = headers(h.name)
		}
		var v string
		switch len(vs) {
		case 0:
			return false
		case 1:
			v = vs[0]
		default:
			v = strings.Join(vs, ", ")
		}
		if !h.re.re.MatchString(v) {
			return false
		}
	}
	return true
}

// Package conflict decides whether two intercepts of a workload conflict and,
// when they do, produces a concrete request that both would take.
//
// # Intercepts
//
// An intercept on a workload port is global (every request of the port),
// HTTP-filtered (a [Filter]: header conditions NAME=REGEX and an optional
// path REGEX, all of which must match) or replace (every port of the
// workload). A filter without conditions is global. Regexes use RE2 syntax
// (Go's regexp) and are anchored: the whole value must match. Header names
// are case-insensitive and kept lower-case.
//
// Two intercepts conflict when they share a workload and a port and some
// request could match both. A replace intercept conflicts with every
// intercept on its workload, whatever the port. Two HTTP filters conflict
// unless the path (when both have one) or a header named by both has regexes
// whose languages do not intersect. A header named by only one filter never
// separates them: a request can carry any headers.
//
// # What a request's header value is
//
// [Filter.Matches] tests a header condition against the header's combined
// field value: its field lines joined with ", " (RFC 9110 section 5.3). An
// absent header fails the condition, even when the regex matches "". With
// "any value matches" instead, a request carrying both x-user: alice and
// x-user: bob would match two filters that Conflict declares disjoint.
//
// # Deciding intersection exactly
//
// Each regex is parsed with regexp/syntax (Perl flags, as regexp.Compile
// does), wrapped as ^(?:RE)$, simplified and compiled to a syntax.Prog, the
// same program the regexp package runs for Filter.Matches. The program is
// read as an NFA over runes. Its character classes, including (?i) fold
// orbits, cut the rune space into intervals on which every instruction
// behaves alike. A DFA over those intervals is built lazily and cached per
// regex: each state keeps its live transitions (those that leave threads
// alive) as sorted rune ranges. Checking one filter against a thousand
// others thus does the subset construction once per regex, not once per
// pair.
//
// Two regexes intersect when the product of their DFAs reaches a pair of
// accepting states. A product state's transitions are the intersections of
// the two states' rune ranges, so the product never walks a common
// alphabet. A breadth-first search finds a shortest common string. The
// ranges are tried in a fixed order of preference of their best rune
// (lower-case letters, digits, upper-case, -./_~, other printable ASCII,
// space, printable non-ASCII, the rest), so witnesses read like "alice",
// not "\x00\x00".
//
// Runes are valid Unicode scalar values: surrogates (U+D800-U+DFFF) are left
// out of the alphabet because decoding input never yields them (regexp reads
// an invalid byte as U+FFFD). A common string of runes is therefore a common
// byte string and the other way round. Regexes with a surrogate literal such
// as \x{D800} are refused: Go's one-pass matcher compares literal prefixes
// as UTF-8, in which a surrogate becomes U+FFFD, so ^\x{D800}$ matches
// "\uFFFD" while ^(?:\x{D800}|b)$ does not.
//
// Empty-width assertions are decided exactly, not approximated. In Go every
// assertion (^, $, (?m)^, (?m)$, \A, \z, \b, \B) depends only on the rune
// before and the rune after the current position (syntax.EmptyOpContext).
// A DFA state therefore remembers the class of the previous rune (start of
// text, newline, ASCII word character or other, as coarse as the regex's
// assertions allow), and the interval cuts keep newline and word characters
// apart when a regex uses line or word assertions. The ε-closure is taken
// only once the next rune, or the end of text, is known.
//
// Literal regexes (no metacharacters, no case folding) skip the automaton:
// the other regex's compiled regexp decides membership of the one string.
//
// # Conservative answers
//
// The search is bounded: at most 100,000 product states and a fixed amount
// of work (states times intervals times state sizes), counted the same way
// whichever argument comes first, so the answer is symmetric and never
// depends on what earlier calls left in the caches. Regexes compiling to more than 5,000
// instructions are not analysed. When a question cannot be decided within
// the bounds, Conflict answers "conflict" without an example and says so:
// refusing an intercept is safer than silently routing a request to two
// laptops. NewFilter rejects regexes that are too large to analyse, whose
// shortest match cannot be found within the bounds, or that match nothing.
//
// The analysis uses regex semantics, not HTTP's: a witness may contain a
// newline or leading space that no HTTP header value can carry. That too
// errs towards "conflict".
//
// # Concurrency
//
// Filter values may be copied and used from any number of goroutines. Copies
// share the compiled regexes; each regex's DFA cache has its own mutex, held
// for the duration of one search. Searches lock their (at most two) caches
// in a global order, so they never deadlock.
package conflict

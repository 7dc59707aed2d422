package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The docs tests read the Markdown of the repository as a user would: they
// do not depend on where in README.md (or docs/) a command or link is.

const repoRoot = "../.."

// docLines are the documented command lines of the Markdown files, with
// their file and line: the lines of fenced code blocks, and the code spans
// of table rows, that run tether (see tetherCommand).
type docLine struct {
	file  string
	line  int
	text  string
	table bool // a code span in a table row
}

var codeSpan = regexp.MustCompile("`([^`]+)`")

func commandLines(t *testing.T, files []string) []docLine {
	t.Helper()
	var out []docLine
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inFence := false
		for i, line := range strings.Split(string(b), "\n") {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, "```") {
				inFence = !inFence
				continue
			}
			if inFence {
				if cmd, ok := tetherCommand(trimmed); ok {
					out = append(out, docLine{file: f, line: i + 1, text: cmd})
				}
				continue
			}
			if !strings.HasPrefix(trimmed, "|") {
				continue
			}
			// A table cell escapes the | of "bash|zsh|fish" as \|.
			for _, m := range codeSpan.FindAllStringSubmatch(strings.ReplaceAll(trimmed, `\|`, "|"), -1) {
				if cmd, ok := tetherCommand(m[1]); ok {
					out = append(out, docLine{file: f, line: i + 1, text: cmd, table: true})
				}
			}
		}
	}
	return out
}

// netnsExec is how the quickstart runs a command in a lab namespace.
var netnsExec = regexp.MustCompile(`^ip netns exec \S+ `)

// tetherCommand is the tether command a documented line runs, if any: the
// line itself, or after "sudo " or "ip netns exec NAME ".
func tetherCommand(line string) (string, bool) {
	line = strings.TrimPrefix(strings.TrimSpace(line), "sudo ")
	line = netnsExec.ReplaceAllString(line, "")
	return line, strings.HasPrefix(line, "tether ")
}

// markdownFiles are README.md and every .md file under docs/.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	files := []string{filepath.Join(repoRoot, "README.md")}
	err := filepath.WalkDir(filepath.Join(repoRoot, "docs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return files
}

// words splits a documented command line into arguments: the comment
// goes, "[--json]" is the flag --json, "[a|b]" and "bash|zsh|fish" are one
// of their choices, and everything after "--" belongs to another program.
func words(line string) []string {
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	}
	var out []string
	for _, w := range strings.Fields(line) {
		if w == "--" {
			break
		}
		w = strings.Trim(w, "[]")
		if !strings.HasPrefix(w, "-") {
			w, _, _ = strings.Cut(w, "|")
		}
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

// TestReadmeCommands: every `tether ...` line in a code block of the docs
// names a command that exists, with flags it has and arguments it takes.
func TestReadmeCommands(t *testing.T) {
	lines := commandLines(t, markdownFiles(t))
	if len(lines) < 10 {
		t.Fatalf("found only %d documented command lines: is the parser still right?", len(lines))
	}
	for _, dl := range lines {
		args := words(dl.text)[1:] // without "tether"
		root := newRoot()
		// Execute adds these before it looks for the command.
		root.InitDefaultHelpCmd()
		root.InitDefaultCompletionCmd()
		cmd, rest, err := root.Find(args)
		if err != nil {
			t.Errorf("%s:%d: %q: %v", dl.file, dl.line, dl.text, err)
			continue
		}
		var positional []string
		for i := 0; i < len(rest); i++ {
			w := rest[i]
			if !strings.HasPrefix(w, "-") || w == "-" {
				positional = append(positional, w)
				continue
			}
			name, _, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
			fl := cmd.Flags().Lookup(name)
			if !strings.HasPrefix(w, "--") {
				fl = cmd.Flags().ShorthandLookup(name)
			}
			if fl == nil {
				fl = cmd.InheritedFlags().Lookup(name)
			}
			if fl == nil {
				t.Errorf("%s:%d: %q: %s has no flag %s", dl.file, dl.line, dl.text, cmd.CommandPath(), w)
				continue
			}
			if !hasValue && fl.NoOptDefVal == "" {
				i++ // the flag's value
			}
		}
		// A table's `tether revoke` names the command; with arguments or
		// flags it shows a use, whose arguments must fit.
		mention := dl.table && len(rest) == 0
		if err := cmd.ValidateArgs(positional); err != nil && !mention {
			t.Errorf("%s:%d: %q: arguments %q: %v", dl.file, dl.line, dl.text, positional, err)
		}
		if err := runHelp(cmd); err != nil {
			t.Errorf("%s:%d: %s --help: %v", dl.file, dl.line, cmd.CommandPath(), err)
		}
	}
}

// runHelp runs `tether PATH... --help` for cmd on a fresh tree.
func runHelp(cmd *cobra.Command) error {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	path := strings.Fields(cmd.CommandPath())[1:]
	root.SetArgs(append(path, "--help"))
	return root.ExecuteContext(context.Background())
}

var (
	mdLink  = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	heading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
)

// slug is GitHub's anchor of a heading.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestDocLinks: every relative link of README.md and docs/ resolves to a
// file, and an anchor to a heading of the Markdown file it points to.
func TestDocLinks(t *testing.T) {
	for _, f := range markdownFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			p := f
			if file != "" {
				p = filepath.Join(filepath.Dir(f), file)
			}
			tb, err := os.ReadFile(p)
			if err != nil {
				if fi, serr := os.Stat(p); serr == nil && fi.IsDir() {
					continue
				}
				t.Errorf("%s: link %q: %v", f, target, err)
				continue
			}
			if anchor == "" || !strings.HasSuffix(p, ".md") {
				continue
			}
			found := false
			for _, h := range heading.FindAllStringSubmatch(string(tb), -1) {
				found = found || slug(h[1]) == anchor
			}
			if !found {
				t.Errorf("%s: link %q: %s has no heading with anchor #%s", f, target, p, anchor)
			}
		}
	}
}

func TestDocHelpers(t *testing.T) {
	for line, want := range map[string]string{
		"sudo tether daemon install":                        "tether daemon install",
		"ip netns exec laptop tether connect --manager m:1": "tether connect --manager m:1",
		"  tether status":                                   "tether status",
		"ip netns exec pod python3 -m http.server":          "",
		"curl http://198.18.2.2:8080/":                      "",
	} {
		got, ok := tetherCommand(line)
		if !ok {
			got = ""
		}
		if got != want {
			t.Errorf("tetherCommand(%q) = %q, want %q", line, got, want)
		}
	}
	dir := t.TempDir()
	md := filepath.Join(dir, "x.md")
	doc := "| command | what |\n|---|---|\n| `tether status [--json]` | `tether list` and `curl` |\n" +
		"| `tether completion bash\\|zsh` | prose `tether` alone |\n```\nip netns exec mgr tether manager\n```\n"
	if err := os.WriteFile(md, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, dl := range commandLines(t, []string{md}) {
		got = append(got, fmt.Sprintf("%d:%s", dl.line, dl.text))
	}
	if want := []string{"3:tether status [--json]", "3:tether list", "4:tether completion bash|zsh", "6:tether manager"}; !slices.Equal(got, want) {
		t.Errorf("commandLines = %q, want %q", got, want)
	}
	for line, want := range map[string]string{
		"tether status [--json]        # comment":              "tether status --json",
		"tether daemon install -- --config /etc/tether/d.yaml": "tether daemon install",
		"tether config view [daemon|manager|agent]":            "tether config view daemon",
		"tether completion bash|zsh|fish":                      "tether completion bash",
		"tether intercept a --http-header x-user=alice # mine": "tether intercept a --http-header x-user=alice",
	} {
		if got := strings.Join(words(line), " "); got != want {
			t.Errorf("words(%q) = %q, want %q", line, got, want)
		}
	}
	for h, want := range map[string]string{
		"Activity: when is a person there?":  "activity-when-is-a-person-there",
		"`tether status --json`":             "tether-status---json",
		"Intercepts: sharing a cluster, too": "intercepts-sharing-a-cluster-too",
	} {
		if got := slug(h); got != want {
			t.Errorf("slug(%q) = %q, want %q", h, got, want)
		}
	}
}

// TestConfigKeysDocumented: every configuration key of every role has a row
// in the tables of docs/operations.md, so a new key cannot go unexplained.
func TestConfigKeysDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " |")
		for _, m := range codeSpan.FindAllStringSubmatch(first, -1) {
			rows[m[1]] = true
		}
	}
	for _, r := range configRoles() {
		for key := range r.flags(pflag.NewFlagSet(r.name, pflag.ContinueOnError)) {
			if !rows[key] {
				t.Errorf("%s key %s has no row in docs/operations.md", r.name, key)
			}
		}
	}
}

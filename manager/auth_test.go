package manager

import (
	"strings"
	"testing"
)

func TestParseTokens(t *testing.T) {
	toks, err := parseTokens(strings.NewReader(`# static tokens
t-alice,alice,1001,"devs,admins"
t-bob,bob,1002
`))
	if err != nil {
		t.Fatal(err)
	}
	if a := toks["t-alice"]; a.User != "alice" || a.UID != "1001" || len(a.Groups) != 2 || a.Groups[1] != "admins" {
		t.Fatalf("alice: %+v", a)
	}
	if b := toks["t-bob"]; b.User != "bob" || len(b.Groups) != 0 {
		t.Fatalf("bob: %+v", b)
	}
	for name, in := range map[string]string{
		"too few fields": "t1,alice\n",
		"empty user":     "t1,,1\n",
		"duplicate":      "t1,a,1\nt1,b,2\n",
		"empty":          "# nothing\n",
		"bad quoting":    "t1,a,1,\"g\n",
	} {
		if _, err := parseTokens(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

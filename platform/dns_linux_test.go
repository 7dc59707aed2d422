package platform

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeResolvectl puts a resolvectl on PATH that records its arguments;
// `status` fails when resolvedUp is false, as it does without
// systemd-resolved.
func fakeResolvectl(t *testing.T, resolvedUp bool) (log string) {
	t.Helper()
	dir := t.TempDir()
	log = filepath.Join(dir, "calls")
	status := "exit 0"
	if !resolvedUp {
		status = "exit 1"
	}
	script := "#!/bin/sh\necho \"$@\" >> " + log + "\nif [ \"$1\" = status ]; then " + status + "; fi\n"
	if err := os.WriteFile(filepath.Join(dir, "resolvectl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return log
}

func TestConfigureDNSWithResolved(t *testing.T) {
	calls := fakeResolvectl(t, true)
	undo, note, err := ConfigureDNS("tether0", netip.MustParseAddr("198.18.2.254"), []string{"cluster.local"}, []string{"default.svc.cluster.local"}, slog.New(slog.DiscardHandler))
	if err != nil || note != "systemd-resolved" {
		t.Fatalf("ConfigureDNS: %q, %v", note, err)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(calls)
	want := "status tether0\ndns tether0 198.18.2.254\ndomain tether0 ~cluster.local default.svc.cluster.local\nrevert tether0\n"
	if string(b) != want {
		t.Fatalf("resolvectl calls:\n%s\nwant:\n%s", b, want)
	}
}

func TestConfigureDNSWithoutResolved(t *testing.T) {
	calls := fakeResolvectl(t, false)
	undo, note, err := ConfigureDNS("tether0", netip.MustParseAddr("198.18.2.254"), []string{"cluster.local"}, nil, slog.New(slog.DiscardHandler))
	if err != nil || !strings.Contains(note, "dig @198.18.2.254") {
		t.Fatalf("ConfigureDNS: %q, %v", note, err)
	}
	undo()
	if b, _ := os.ReadFile(calls); string(b) != "status tether0\n" {
		t.Fatalf("changed settings without systemd-resolved: %s", b)
	}
}

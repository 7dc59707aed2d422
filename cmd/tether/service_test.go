package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/tether-dev/tether/daemon"
)

func TestServiceConfig(t *testing.T) {
	defaults := globals{socket: daemon.DefaultSocket, logLevel: "info"}
	for _, tc := range []struct {
		name    string
		exe     string
		g       globals
		flags   []string
		want    []string // Args
		wantErr string
	}{
		{name: "defaults", g: defaults, want: []string{"daemon"}},
		{
			name: "global flags that matter",
			g:    globals{socket: "/run/tether-2/daemon.sock", logLevel: "debug", pprofAddr: "127.0.0.1:6060", noActivity: true},
			want: []string{"daemon", "--socket", "/run/tether-2/daemon.sock", "--log-level", "debug", "--pprof", "127.0.0.1:6060"},
		},
		{
			name:  "daemon flags",
			g:     defaults,
			flags: []string{"--tun-name", "tether%d", "--mtu=1400", "--config", "/etc/tether/daemon.yaml"},
			want:  []string{"daemon", "--tun-name", "tether%d", "--mtu=1400", "--config", "/etc/tether/daemon.yaml"},
		},
		{name: "unknown flag", g: defaults, flags: []string{"--bogus"}, wantErr: "unknown flag: --bogus"},
		{name: "global flag after --", g: defaults, flags: []string{"--socket", "/x"}, wantErr: "global flags such as --socket go before"},
		{name: "bad value", g: defaults, flags: []string{"--mtu", "big"}, wantErr: "invalid argument"},
		{name: "argument", g: defaults, flags: []string{"extra"}, wantErr: `unexpected argument "extra"`},
		{name: "relative config", g: defaults, flags: []string{"--config", "daemon.yaml"}, wantErr: "absolute path"},
		{name: "go run", exe: "/tmp/go-build123/b001/exe/tether", g: defaults, wantErr: "Go's build cache"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exe := tc.exe
			if exe == "" {
				exe = "/usr/local/bin/tether"
			}
			cfg, err := serviceConfig(exe, &tc.g, tc.flags)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Binary != exe || !slices.Equal(cfg.Args, tc.want) {
				t.Errorf("got %s %q, want %s %q", cfg.Binary, cfg.Args, exe, tc.want)
			}
		})
	}
}

// TestDaemonServiceArgs: stray arguments are refused before anything runs
// (--dry-run all the same, so that a regression changes nothing here).
func TestDaemonServiceArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"daemon", "install", "--dry-run", "stray"}, "daemon flags go after --"},
		{[]string{"daemon", "uninstall", "--dry-run", "stray"}, `unknown command "stray"`},
	} {
		root := newRoot()
		root.SetArgs(tc.args)
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("tether %s: %v, want an error with %q", strings.Join(tc.args, " "), err, tc.wantErr)
		}
	}
}

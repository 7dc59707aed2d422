package wire

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	side := func(name string, proto, minProto uint32) Side {
		return Side{Name: name, Upgrade: "upgrade " + name, Protocol: proto, MinProtocol: minProto}
	}
	for _, tc := range []struct {
		name        string
		local, peer Side
		wantErr     string // "" for compatible
		wantOld     string // the side IncompatibleError names to upgrade
		wantNote    string // "" for the same protocol
	}{
		{name: "same", local: side("cli", 3, 2), peer: side("daemon", 3, 2)},
		{name: "pre-protocol peer counts as 1", local: side("cli", 1, 1), peer: side("daemon", 0, 0)},
		{name: "older peer still accepted", local: side("cli", 3, 2), peer: side("manager", 2, 2),
			wantNote: "manager speaks protocol 2, cli protocol 3; they still work together, but upgrade manager"},
		{name: "newer peer still accepts us", local: side("daemon", 2, 2), peer: side("manager", 3, 2),
			wantNote: "daemon speaks protocol 2, manager protocol 3; they still work together, but upgrade daemon"},
		{name: "peer too old", local: side("daemon", 3, 3), peer: side("manager", 2, 1),
			wantErr: "manager speaks protocol 2, but daemon needs at least protocol 3: upgrade manager", wantOld: "manager"},
		{name: "local too old", local: side("daemon", 1, 1), peer: side("manager", 3, 2),
			wantErr: "daemon speaks protocol 1, but manager needs at least protocol 2: upgrade daemon", wantOld: "daemon"},
		{name: "pre-protocol peer, too old", local: side("cli", 2, 2), peer: side("daemon", 0, 0),
			wantErr: "daemon speaks protocol 1, but cli needs at least protocol 2", wantOld: "daemon"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			note, err := Check(tc.local, tc.peer)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("incompatible: %v", err)
				}
				if note != tc.wantNote {
					t.Fatalf("note %q, want %q", note, tc.wantNote)
				}
				return
			}
			var ie *IncompatibleError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.wantErr) || ie.Old.Name != tc.wantOld {
				t.Fatalf("error %v, want %q naming %s to upgrade", err, tc.wantErr, tc.wantOld)
			}
		})
	}
}

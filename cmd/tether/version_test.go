package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// TestVersionJSON: the fields of `tether version --json` without a daemon.
func TestVersionJSON(t *testing.T) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--socket", filepath.Join(t.TempDir(), "none.sock"), "version", "--json"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	client, _ := v["client"].(map[string]any)
	for _, key := range []string{"version", "revision", "time", "modified", "go_version", "protocol", "min_protocol"} {
		if _, ok := client[key]; !ok {
			t.Errorf("client has no %q: %v", key, client)
		}
	}
	if client["protocol"] != float64(wire.Protocol) || !strings.HasPrefix(client["go_version"].(string), "go") {
		t.Errorf("client: %v", client)
	}
	if v["daemon"] != nil || v["manager"] != nil || !strings.Contains(v["daemon_error"].(string), "no daemon answers") {
		t.Errorf("without a daemon: %v", v)
	}
	if notes, ok := v["notes"].([]any); !ok || len(notes) != 0 {
		t.Errorf("notes: %v", v["notes"])
	}
}

// TestDaemonProtocolCheck: connect refuses a daemon this client cannot
// work with and says which side to upgrade; status names a different but
// compatible one.
func TestDaemonProtocolCheck(t *testing.T) {
	build := func(proto, minProto uint32) *pbm.BuildInfo {
		return &pbm.BuildInfo{Version: "v9", Protocol: proto, MinProtocol: minProto}
	}
	for _, tc := range []struct {
		name      string
		resp      *pb.StatusResponse
		wantErr   string // connect's refusal; "" for none
		wantNotes []string
	}{
		{name: "same protocol", resp: &pb.StatusResponse{DaemonBuild: build(wire.Protocol, wire.MinProtocol)}},
		{name: "daemon from before build info counts as protocol 1", resp: &pb.StatusResponse{}},
		{name: "daemon too new for this client", resp: &pb.StatusResponse{DaemonBuild: build(wire.Protocol+2, wire.Protocol+1)},
			wantErr:   "cannot connect: this tether command speaks protocol 1, but the tether daemon needs at least protocol 2: upgrade the tether command",
			wantNotes: []string{"upgrade the tether command"}},
		{name: "newer daemon that still works with this client", resp: &pb.StatusResponse{DaemonBuild: build(wire.Protocol+1, wire.MinProtocol)},
			wantNotes: []string{"this tether command speaks protocol 1, the tether daemon protocol 2; they still work together, but upgrade the tether command"}},
		{name: "manager too new for the laptop", resp: &pb.StatusResponse{Connected: true, DaemonBuild: build(wire.Protocol, wire.MinProtocol), ManagerBuild: build(wire.Protocol+1, wire.Protocol+1)},
			wantNotes: []string{"tether on this laptop speaks protocol 1, but the traffic manager needs at least protocol 2: upgrade tether on this laptop"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkDaemonProtocol(tc.resp)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("checkDaemonProtocol: %v, want %q", err, tc.wantErr)
			}
			notes := versionNotes(tc.resp)
			if len(notes) != len(tc.wantNotes) {
				t.Fatalf("notes %q, want %q", notes, tc.wantNotes)
			}
			for i, want := range tc.wantNotes {
				if !strings.Contains(notes[i], want) {
					t.Errorf("note %q lacks %q", notes[i], want)
				}
			}
			var out bytes.Buffer
			printStatus(&out, tc.resp)
			for _, want := range tc.wantNotes {
				if !strings.Contains(out.String(), want) {
					t.Errorf("status does not name the version: %s", out.String())
				}
			}
		})
	}
}

// TestVersionFlag: `tether --version` is `tether version`.
func TestVersionFlag(t *testing.T) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--socket", filepath.Join(t.TempDir(), "none.sock"), "--version"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Client:  ", "protocol 1", "Daemon:  unknown: no daemon answers"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--version lacks %q:\n%s", want, out.String())
		}
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/buildinfo"
	pb "github.com/tether-dev/tether/rpc/daemon"
	"github.com/tether-dev/tether/wire"
)

// versionJSON is the output of `tether version --json`; fields are only
// added.
type versionJSON struct {
	Client buildinfo.Info `json:"client"`
	// Daemon is the daemon on --socket, null when none answers; DaemonError
	// says why.
	Daemon      *buildinfo.Info `json:"daemon"`
	DaemonError string          `json:"daemon_error,omitempty"`
	// Manager is the traffic manager the daemon is connected to, null when
	// it is not connected.
	Manager        *buildinfo.Info `json:"manager"`
	ManagerAddress string          `json:"manager_address,omitempty"`
	// Notes name a daemon or manager whose protocol differs from the
	// client's, and which side to upgrade.
	Notes []string `json:"notes"`
}

func newVersionCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show the versions of this client, the daemon and the traffic manager",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runVersion(cmd.Context(), g, cmd.OutOrStdout(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}

// runVersion prints the versions; a daemon that does not answer is shown,
// not an error, since the client's version is still worth knowing.
func runVersion(ctx context.Context, g *globals, w io.Writer, asJSON bool) error {
	v := versionJSON{Client: buildinfo.Read(), Notes: []string{}}
	resp, err := callDaemon(ctx, g, 5*time.Second, func(ctx context.Context, c pb.DaemonClient) (*pb.StatusResponse, error) {
		return c.Status(ctx, &pb.StatusRequest{})
	})
	if err != nil {
		v.DaemonError = err.Error()
	} else {
		d := buildinfo.FromProto(resp.DaemonBuild)
		v.Daemon = &d
		if resp.Connected {
			m := buildinfo.FromProto(resp.ManagerBuild)
			v.Manager, v.ManagerAddress = &m, resp.Manager
		}
		v.Notes = append(v.Notes, versionNotes(resp)...)
	}
	if asJSON {
		return printJSON(w, v)
	}
	fmt.Fprintf(w, "Client:  %s\n", v.Client)
	switch {
	case v.Daemon != nil:
		fmt.Fprintf(w, "Daemon:  %s (%s)\n", v.Daemon, g.socket)
	default:
		fmt.Fprintf(w, "Daemon:  unknown: %s\n", v.DaemonError)
	}
	switch {
	case v.Manager != nil:
		fmt.Fprintf(w, "Manager: %s (%s)\n", v.Manager, v.ManagerAddress)
	case v.Daemon != nil:
		fmt.Fprintln(w, "Manager: unknown: not connected")
	}
	for _, n := range v.Notes {
		fmt.Fprintf(w, "Note:    %s\n", n)
	}
	return nil
}

// versionNotes names a daemon or manager in resp whose protocol differs
// from this client's, and says which side to upgrade; incompatible ones
// too.
func versionNotes(resp *pb.StatusResponse) []string {
	var notes []string
	add := func(note string, err error) {
		switch {
		case err != nil:
			notes = append(notes, err.Error())
		case note != "":
			notes = append(notes, note)
		}
	}
	add(wire.Check(wire.Local(wire.CLIName, wire.UpgradeCLI), buildinfo.FromProto(resp.DaemonBuild).Side(wire.DaemonName, wire.UpgradeDaemon)))
	if resp.Connected {
		add(wire.Check(wire.Local("tether on this laptop", wire.UpgradeDaemon), buildinfo.FromProto(resp.ManagerBuild).Side(wire.ManagerName, wire.UpgradeManager)))
	}
	return notes
}

// checkDaemonProtocol refuses a daemon this client cannot work with,
// saying which side to upgrade.
func checkDaemonProtocol(resp *pb.StatusResponse) error {
	_, err := wire.Check(wire.Local(wire.CLIName, wire.UpgradeCLI), buildinfo.FromProto(resp.DaemonBuild).Side(wire.DaemonName, wire.UpgradeDaemon))
	var ie *wire.IncompatibleError
	if errors.As(err, &ie) {
		return fmt.Errorf("cannot connect: %w", err)
	}
	return nil
}

package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/activity"
	pb "github.com/tether-dev/tether/rpc/daemon"
	pbm "github.com/tether-dev/tether/rpc/manager"
)

// sessionJSON is one row of `tether sessions --json`; fields are only added.
type sessionJSON struct {
	SessionID   string  `json:"session_id"`
	User        string  `json:"user"`
	Host        string  `json:"host"`
	State       string  `json:"state"`
	IdleSeconds float64 `json:"idle_seconds"`
}

func newSessionsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List every session the traffic manager holds: user, host, idle time, state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list *pbm.SessionsResponse
			err := call(cmd, g, 10*time.Second, func(ctx context.Context, c pb.DaemonClient) (err error) {
				list, err = c.Sessions(ctx, &pbm.SessionsRequest{})
				return err
			})
			if err != nil {
				return err
			}
			rows := make([]sessionJSON, 0, len(list.Sessions))
			for _, s := range list.Sessions {
				rows = append(rows, sessionJSON{SessionID: s.SessionId, User: s.User, Host: s.Host, State: s.State, IdleSeconds: ms(s.IdleMs)})
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tHOST\tSTATE\tIDLE\tSESSION")
			for _, r := range rows {
				idle := (time.Duration(r.IdleSeconds) * time.Second).String()
				if r.State == activity.Unknown.String() {
					idle = ">=" + idle // a lower bound until the first dated report
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.User, r.Host, r.State, idle, r.SessionID)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

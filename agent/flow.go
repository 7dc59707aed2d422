package agent

import (
	"fmt"

	"github.com/tether-dev/tether/tunnel"
)

// openError is a flow that did not open. Nothing was sent through it, so the
// caller may send the traffic elsewhere.
type openError struct {
	intercept string
	err       error
}

func (e *openError) Error() string {
	return fmt.Sprintf("open flow for intercept %s: %v", e.intercept, e.err)
}

func (e *openError) Unwrap() error { return e.err }

// open opens one flow to the owner of intercept id, through the manager's
// AgentTunnel, bounded by the open timeout; the flow then lives until it is
// closed or the agent stops. The flow's life is the agent's (a.life), not a
// request's: an HTTP transport keeps the connection after the request that
// dialed it.
func (a *Agent) open(id, source string) (*tunnel.Conn, error) {
	f, err := a.tunnels.OpenIntercept(a.life, id, source, a.cfg.Port)
	if err != nil {
		return nil, &openError{intercept: id, err: err}
	}
	return tunnel.NewConn(f, a.ln.Addr(), flowAddr(id)), nil
}

// flowAddr names the far end of a flow: the intercept.
type flowAddr string

func (a flowAddr) Network() string { return "tether-intercept" }
func (a flowAddr) String() string  { return string(a) }

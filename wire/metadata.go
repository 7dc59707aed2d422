package wire

// gRPC metadata keys. Between the daemon, the agent and the manager:
const (
	// MDAuthorization carries the bearer token ("Bearer TOKEN") of a
	// manager with auth.tokenFile, on every call.
	MDAuthorization = "authorization"
	// MDSession and MDSecret carry the session credentials on every call
	// after Arrive.
	MDSession = "tether-session"
	MDSecret  = "tether-secret"
)

// Between the CLI and the daemon (the control API):
const (
	// MDNoActivity marks CLI calls made with --no-activity (and shell
	// completions): they do not count as activity.
	MDNoActivity = "tether-no-activity"
	// MDForUID is the metadata key in which root's `tether connect` names
	// the user it acts for (SUDO_UID). The daemon believes it only from
	// root and its own uid.
	MDForUID = "tether-for-uid"
)

// An agent in a cluster authenticates with its pod's projected
// service-account token of this audience, mounted at AgentTokenPath; the
// manager accepts no other token from an agent, and no such token from a
// user.
const (
	AgentAudience  = "tether.dev/agent"
	AgentTokenPath = "/var/run/secrets/tether.dev/agent/token"
)

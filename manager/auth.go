package manager

import (
	"context"
	"crypto/x509"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Authenticator tells who holds a bearer token: the token file
// (auth.tokenFile, Tokens) or, in a cluster, the API server by
// TokenReview (kube/auth). When ok is false the token is refused; err, if
// set, says why (the authority's answer, or that it could not be asked).
// The roles (AgentGroup) are read from the identity's groups whatever the
// source.
type Authenticator interface {
	AuthenticateToken(ctx context.Context, token string) (id Identity, ok bool, err error)
}

// CertAuthenticator is the optional ability of an Authenticator to tell
// who holds a TLS client certificate (chain: the peer's, leaf first, not
// yet verified: the Authenticator verifies it against its client CA). The
// manager asks it for calls without a bearer token.
type CertAuthenticator interface {
	AuthenticateCert(ctx context.Context, chain []*x509.Certificate) (id Identity, ok bool, err error)
}

// AgentGroup is the group that makes an identity an agent. An
// agent may call WatchAgent and AgentTunnel and nothing else; every other
// identity is a user, who may call everything but those.
const AgentGroup = "tether:agents"

// Identity is who a token belongs to.
type Identity struct {
	User   string
	UID    string
	Groups []string
	// Workload ("namespace/name") is set for an agent whose credential
	// binds it to one workload (AgentAuthenticator): it serves that one
	// and no other, whatever an Authorizer says. Pod ("namespace/name")
	// is the pod it runs in, for refusals and logs.
	Workload, Pod string
}

// AgentAuthenticator is the optional ability of an Authenticator to tell
// agents by a credential only agents hold: in a cluster, the projected
// service-account token of the agent's pod, whose audience is an agent's
// and whose pod names the workload (kube/auth). The manager asks it, not
// AuthenticateToken, on agent calls; an identity it returns is an agent
// bound to its Workload. When ok is false, err says why the token is no
// agent's.
type AgentAuthenticator interface {
	AuthenticateAgent(ctx context.Context, token string) (id Identity, ok bool, err error)
	// AgentCredential describes what an agent presents, for refusals:
	// "a projected service-account token of audience tether.dev/agent".
	AgentCredential() string
}

// Agent reports whether id has the agent role.
func (id Identity) Agent() bool { return slices.Contains(id.Groups, AgentGroup) }

// describe names id with its role, for refusals: "user alice's".
func (id Identity) describe() string {
	if id.Pod != "" {
		return "agent " + id.User + "'s (pod " + id.Pod + ")"
	}
	if id.Agent() {
		return "agent " + id.User + "'s"
	}
	return "user " + id.User + "'s"
}

// Tokens maps bearer tokens to identities, read from a file in the
// Kubernetes static token format: token,user,uid,"group1,group2".
type Tokens map[string]Identity

var _ Authenticator = Tokens(nil)

// AuthenticateToken implements Authenticator.
func (t Tokens) AuthenticateToken(_ context.Context, token string) (Identity, bool, error) {
	id, ok := t[token]
	return id, ok, nil
}

// LoadTokens reads a static token file. Errors name the file and line.
func LoadTokens(path string) (Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth.tokenFile: %w", err)
	}
	defer f.Close()
	toks, err := parseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("auth.tokenFile %s: %w", path, err)
	}
	return toks, nil
}

func parseTokens(r io.Reader) (Tokens, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	toks := Tokens{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < 3 || rec[0] == "" || rec[1] == "" {
			return nil, fmt.Errorf("line %d: want token,user,uid[,\"group1,group2\"]", line)
		}
		if _, dup := toks[rec[0]]; dup {
			return nil, fmt.Errorf("line %d: duplicate token", line)
		}
		id := Identity{User: rec[1], UID: rec[2]}
		if len(rec) > 3 && rec[3] != "" {
			for _, g := range strings.Split(rec[3], ",") {
				id.Groups = append(id.Groups, strings.TrimSpace(g))
			}
		}
		toks[rec[0]] = id
	}
	if len(toks) == 0 {
		return nil, errors.New("no tokens")
	}
	return toks, nil
}

// bearer extracts the token from an authorization value.
func bearer(v string) string {
	if t, ok := strings.CutPrefix(v, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

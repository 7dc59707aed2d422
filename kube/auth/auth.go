// Package auth lets the Kubernetes API server decide who calls the traffic
// manager and what they may do, as an aggregated API server does:
// k8s.io/apiserver's delegating authenticator (TokenReview) and delegating
// authorizer (SubjectAccessReview), both cached. It implements the
// manager's Authenticator and rbac.Authorizer, so the manager itself never
// imports Kubernetes.
package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"

	"github.com/tether-dev/tether/manager"
	"github.com/tether-dev/tether/manager/rbac"
	"github.com/tether-dev/tether/wire"
)

// Cache lifetimes of the API server's answers, as kube-apiserver's
// aggregated servers default them: a revoked token or a removed
// RoleBinding takes effect within these.
const (
	DefaultTokenCacheTTL = 10 * time.Second
	DefaultAllowCacheTTL = 10 * time.Second
	DefaultDenyCacheTTL  = 10 * time.Second
)

// reviewTimeout bounds one TokenReview or SubjectAccessReview.
const reviewTimeout = 10 * time.Second

// backoff retries reviews that failed to reach the API server (not
// refusals): five tries over about four seconds.
var backoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}

// Config configures New.
type Config struct {
	Client kubernetes.Interface
	// TTLs of cached answers; the Default*CacheTTL when zero.
	TokenCacheTTL, AllowCacheTTL, DenyCacheTTL time.Duration
	// ClientCA (PEM) verifies client certificates, whose common name is
	// the user and organizations the groups, as the API server maps
	// them (see ClientCA). Nil: certificates are not accepted.
	ClientCA []byte
	// Pods finds the workload of an agent's pod (kube/workloads). Nil:
	// no agent is accepted.
	Pods PodWorkloads
}

// PodWorkloads finds the workload that owns the live pod namespace/name
// of uid, whose agent serves that workload only.
type PodWorkloads interface {
	WorkloadOfPod(ctx context.Context, namespace, name, uid string) (manager.WorkloadRef, error)
}

// The configmap where the API server publishes its client CA for
// aggregated API servers, and its key.
const (
	authConfigMapNamespace = "kube-system"
	authConfigMapName      = "extension-apiserver-authentication"
	clientCAKey            = "client-ca-file"
)

// ClientCA reads the cluster's client CA from
// kube-system/extension-apiserver-authentication (the manager needs get
// on it: Role extension-apiserver-authentication-reader).
func ClientCA(ctx context.Context, client kubernetes.Interface) ([]byte, error) {
	cm, err := client.CoreV1().ConfigMaps(authConfigMapNamespace).Get(ctx, authConfigMapName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the cluster's client CA (configmap %s/%s): %w", authConfigMapNamespace, authConfigMapName, err)
	}
	ca := cm.Data[clientCAKey]
	if ca == "" {
		return nil, fmt.Errorf("the cluster's client CA: configmap %s/%s has no %s", authConfigMapNamespace, authConfigMapName, clientCAKey)
	}
	return []byte(ca), nil
}

// Authenticator identifies bearer tokens by TokenReview: users by the
// API server's own audience, agents by wire.AgentAudience.
type Authenticator struct {
	req  authenticator.Request
	pods PodWorkloads
}

var (
	_ manager.Authenticator      = (*Authenticator)(nil)
	_ manager.CertAuthenticator  = (*Authenticator)(nil)
	_ manager.AgentAuthenticator = (*Authenticator)(nil)
)

// Authorizer decides by SubjectAccessReview.
type Authorizer struct{ a authorizer.Authorizer }

var _ rbac.Authorizer = (*Authorizer)(nil)

// New returns the API server's authenticator and authorizer.
func New(cfg Config) (*Authenticator, *Authorizer, error) {
	if cfg.Client == nil {
		return nil, nil, errors.New("kube/auth: no Kubernetes client")
	}
	or := func(d, def time.Duration) time.Duration {
		if d == 0 {
			return def
		}
		return d
	}
	b := backoff
	ac := authenticatorfactory.DelegatingAuthenticatorConfig{
		TokenAccessReviewClient:  cfg.Client.AuthenticationV1(),
		TokenAccessReviewTimeout: reviewTimeout,
		WebhookRetryBackoff:      &b,
		CacheTTL:                 or(cfg.TokenCacheTTL, DefaultTokenCacheTTL),
	}
	if cfg.ClientCA != nil {
		ca, err := dynamiccertificates.NewStaticCAContent("client-ca", cfg.ClientCA)
		if err != nil {
			return nil, nil, fmt.Errorf("kube/auth: client CA: %w", err)
		}
		ac.ClientCertificateCAContentProvider = ca
	}
	req, _, err := ac.New()
	if err != nil {
		return nil, nil, fmt.Errorf("kube/auth: delegating authenticator: %w", err)
	}
	b2 := backoff
	a, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: cfg.Client.AuthorizationV1(),
		AllowCacheTTL:             or(cfg.AllowCacheTTL, DefaultAllowCacheTTL),
		DenyCacheTTL:              or(cfg.DenyCacheTTL, DefaultDenyCacheTTL),
		WebhookRetryBackoff:       &b2,
	}.New()
	if err != nil {
		return nil, nil, fmt.Errorf("kube/auth: delegating authorizer: %w", err)
	}
	authn := &Authenticator{req: req}
	if cfg.Pods != nil {
		authn.pods = newCachedPods(cfg.Pods, or(cfg.TokenCacheTTL, DefaultTokenCacheTTL), time.Now)
	}
	return authn, &Authorizer{a: a}, nil
}

// The extra keys of a pod-bound service-account token's user, as the API
// server's TokenReview reports them.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// AgentCredential implements manager.AgentAuthenticator.
func (a *Authenticator) AgentCredential() string {
	return fmt.Sprintf("its pod's projected service-account token of audience %s (mounted at %s)", wire.AgentAudience, wire.AgentTokenPath)
}

// AuthenticateAgent implements manager.AgentAuthenticator: a TokenReview
// for wire.AgentAudience, whose bound pod (the review's extra pod-name and
// pod-uid) must still be the live pod of that name; its owner chain gives
// the one workload the agent serves.
func (a *Authenticator) AuthenticateAgent(ctx context.Context, token string) (manager.Identity, bool, error) {
	// The review asks for the agents' audience only, which no
	// developer's token has: the API server refuses audience-agnostic
	// tokens (static, or OIDC for its own audience) for an audience not
	// its own. The cache keeps these answers apart from users'.
	actx := authenticator.WithAudiences(ctx, authenticator.Audiences{wire.AgentAudience})
	u, err := a.review(actx, token, "TokenReview for audience "+wire.AgentAudience)
	if err != nil {
		return manager.Identity{}, false, err
	}
	pod, uid := one(u.GetExtra()[extraPodName]), one(u.GetExtra()[extraPodUID])
	ns, _, isSA := strings.Cut(strings.TrimPrefix(u.GetName(), serviceAccountPrefix), ":")
	if pod == "" || uid == "" || !strings.HasPrefix(u.GetName(), serviceAccountPrefix) || !isSA {
		return manager.Identity{}, false, fmt.Errorf("the token of %s is not bound to a pod", u.GetName())
	}
	if a.pods == nil {
		return manager.Identity{}, false, errors.New("this traffic manager cannot find the workloads of pods")
	}
	w, err := a.pods.WorkloadOfPod(ctx, ns, pod, uid)
	if err != nil {
		return manager.Identity{}, false, fmt.Errorf("the token's pod: %w", err)
	}
	return manager.Identity{User: u.GetName(), UID: u.GetUID(), Groups: append(slices.Clip(u.GetGroups()), manager.AgentGroup),
		Workload: w.Key(), Pod: ns + "/" + pod}, true, nil
}

// serviceAccountPrefix begins a service account's user name:
// system:serviceaccount:NAMESPACE:NAME.
const serviceAccountPrefix = "system:serviceaccount:"

func one(vals []string) string {
	if len(vals) == 1 {
		return vals[0]
	}
	return ""
}

// AuthenticateToken implements manager.Authenticator. A refusal's error
// is the API server's reason ("invalid bearer token", the token's status
// error) or why it could not be asked.
func (a *Authenticator) AuthenticateToken(ctx context.Context, token string) (manager.Identity, bool, error) {
	u, err := a.review(ctx, token, "TokenReview")
	if err != nil {
		return manager.Identity{}, false, err
	}
	return manager.Identity{User: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups()}, true, nil
}

// review asks the delegating authenticator who token is. It judges HTTP
// requests, so the token travels in one that is never sent; a refusal
// says what was asked (what) and the API server's reason.
func (a *Authenticator) review(ctx context.Context, token, what string) (user.Info, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "/", nil)
	if err != nil {
		return nil, err
	}
	r.Header.Set("Authorization", "Bearer "+token)
	resp, ok, err := a.req.AuthenticateRequest(r)
	if !ok || resp == nil || resp.User == nil {
		if err == nil {
			err = errors.New("the API server does not know this token")
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return resp.User, nil
}

// AuthenticateCert implements manager.CertAuthenticator: the chain is
// verified against Config.ClientCA, as the API server's x509
// authenticator does.
func (a *Authenticator) AuthenticateCert(ctx context.Context, chain []*x509.Certificate) (manager.Identity, bool, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "/", nil)
	if err != nil {
		return manager.Identity{}, false, err
	}
	r.TLS = &tls.ConnectionState{PeerCertificates: chain}
	resp, ok, err := a.req.AuthenticateRequest(r)
	if !ok || resp == nil || resp.User == nil {
		if err == nil {
			err = errors.New("no client CA accepts this certificate")
		}
		return manager.Identity{}, false, fmt.Errorf("client certificate: %w", err)
	}
	u := resp.User
	return manager.Identity{User: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups()}, true, nil
}

// Authorize implements rbac.Authorizer with a SubjectAccessReview of r's
// resource attributes. A denial's reason is the review's, which names the
// deciding authorizer's details when it gives any.
func (z *Authorizer) Authorize(ctx context.Context, s rbac.Subject, r rbac.Request) (bool, string, error) {
	resource, sub, _ := strings.Cut(r.Resource, "/")
	d, reason, err := z.a.Authorize(ctx, authorizer.AttributesRecord{
		User: &user.DefaultInfo{Name: s.User, Groups: s.Groups},
		Verb: r.Verb, Namespace: r.Namespace, APIGroup: r.APIGroup,
		Resource: resource, Subresource: sub, Name: r.Name, ResourceRequest: true,
	})
	if err != nil {
		return false, "", fmt.Errorf("SubjectAccessReview: %w", err)
	}
	return d == authorizer.DecisionAllow, reason, nil
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tether-dev/tether/kube"
	kubeauth "github.com/tether-dev/tether/kube/auth"
	"github.com/tether-dev/tether/kube/inject"
	kubesubnets "github.com/tether-dev/tether/kube/subnets"
	kubeworkloads "github.com/tether-dev/tether/kube/workloads"
	"github.com/tether-dev/tether/manager"
	"github.com/tether-dev/tether/manager/rbac"
	"github.com/tether-dev/tether/tunnel"
)

// shutdownGrace is how long a stopping manager waits for calls to end after
// it ended all flows.
const shutdownGrace = 2 * time.Second

func newManagerCmd(g *globals) *cobra.Command {
	var configFile, metricsAddr, logFile string
	var keys map[string]string // set below, before RunE runs
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the traffic manager: dials into the cluster network for daemons",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, closeLog, err := g.startRole(cmd, logFile, configFile, keys)
			if err != nil {
				return err
			}
			defer closeLog()
			settings, err := managerSettings(v)
			if err != nil {
				return err
			}
			subnets, durations := settings.subnets, settings.durations
			log := g.logger()
			setMaxProcs(cmd.Context(), v.GetInt("runtime.maxProcs"), log)
			if err := servePprof(g.pprofAddr, log); err != nil {
				return err
			}
			var authn manager.Authenticator
			var authz rbac.Authorizer
			var clientCA []byte // PEM, when client certificates identify callers
			// In a cluster (or with kube.config) the manager has
			// Kubernetes credentials of its own: the rules follow the
			// traffic-manager configmap, and with auth.mode kubernetes the
			// API server decides who calls and what they may do.
			kc, err := kube.Client(v.GetString("kube.config"))
			if err != nil {
				return fmt.Errorf("kube.config: %w", err)
			}
			// With credentials, workloads are the cluster's: an intercept
			// names a Deployment, StatefulSet or ReplicaSet and a port one
			// of its Services targets, and an agent serves its pod's.
			var wls manager.Workloads
			var pods kubeauth.PodWorkloads
			if kc != nil {
				w := kubeworkloads.New(kc)
				wls, pods = w, w
			}
			if settings.kubeAuth {
				if kc == nil {
					return fmt.Errorf("auth.mode %s needs the manager's Kubernetes credentials: run it in a pod, or give kube.config (--kubeconfig)", authModeKubernetes)
				}
				// Client certificates need TLS and the cluster's client
				// CA; without them tokens still work.
				if v.GetString("tls.certFile") != "" {
					if clientCA, err = kubeauth.ClientCA(cmd.Context(), kc); err != nil {
						log.Warn("client certificates are not accepted, tokens are", "component", "manager", "error", err)
					}
				}
				a, z, err := kubeauth.New(kubeauth.Config{Client: kc, TokenCacheTTL: durations["auth.cacheTTL"],
					AllowCacheTTL: durations["auth.cacheTTL"], DenyCacheTTL: durations["auth.cacheTTL"], ClientCA: clientCA, Pods: pods})
				if err != nil {
					return err
				}
				authn, authz = a, z
				log.Info("callers identified by TokenReview and authorized by SubjectAccessReview of the API server", "component", "manager",
					"auth.mode", authModeKubernetes, "auth.cacheTTL", durations["auth.cacheTTL"], "manager.namespace", v.GetString("manager.namespace"))
			} else if f := v.GetString("auth.tokenFile"); f != "" {
				tokens, err := manager.LoadTokens(f)
				if err != nil {
					return err
				}
				authn = tokens
			} else if v.GetBool("grpc.insecureListenAny") {
				log.Warn("development mode (no auth.tokenFile) on any address (grpc.insecureListenAny): anyone who reaches the manager may call it as any user or agent", "component", "manager", "listen", settings.listen)
			} else {
				log.Warn("development mode (no auth.tokenFile): listening on loopback only; give auth.tokenFile, or grpc.insecureListenAny for a lab", "component", "manager", "listen", settings.listen)
			}
			if f := v.GetString("rbac.policyFile"); f != "" {
				policy, err := rbac.LoadPolicy(f)
				if err != nil {
					return fmt.Errorf("rbac.policyFile: %w", err)
				}
				authz = policy
				log.Info("revoke, intercept creation and agents' workloads authorized by RBAC policy", "component", "manager", "rbac.policyFile", f, "manager.namespace", v.GetString("manager.namespace"))
			}
			opts := tunnel.ServerOptions(tunnel.Keepalive{Time: durations["grpc.keepaliveTime"], Timeout: durations["grpc.keepaliveTimeout"]})
			certFile, keyFile := v.GetString("tls.certFile"), v.GetString("tls.keyFile")
			if certFile != "" {
				cert, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return fmt.Errorf("tls.certFile/tls.keyFile: %w", err)
				}
				tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
				if clientCA != nil {
					// Asked for, not required (token callers send
					// none); the Authenticator verifies it against
					// the cluster's client CA.
					tc.ClientAuth = tls.RequestClientCert
				}
				opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
			}
			// In a cluster the subnets are discovered; subnets adds
			// networks to them.
			discover := kc != nil && v.GetBool("kube.discoverSubnets")
			if len(subnets) == 0 && !discover {
				if kc == nil {
					return errors.New("subnets: give the cluster's networks (--subnet CIDR, repeatable); a manager with Kubernetes credentials (in a pod, or kube.config) discovers them")
				}
				return errors.New("subnets: with kube.discoverSubnets false, give the cluster's networks (--subnet CIDR, repeatable)")
			}
			injector, stopWebhook, err := startInjector(cmd.Context(), v, kc, log)
			if err != nil {
				return err
			}
			defer stopWebhook()
			mgr, err := manager.New(manager.Config{
				Subnets: subnets, DiscoverSubnets: discover, ClusterDomain: v.GetString("dns.clusterDomain"),
				DialTimeout:    durations["tunnel.dialTimeout"],
				UDPIdleTimeout: durations["tunnel.udpIdleTimeout"], Log: log, Authenticator: authn,
				Authorizer: authz, Namespace: v.GetString("manager.namespace"),
				DNSDomains: v.GetStringSlice("dns.domains"), DNSServer: v.GetString("dns.server"),
				DNSSearch: v.GetStringSlice("dns.search"), Limits: settings.limits, Injector: injector, Workloads: wls,
				Rules: manager.Rules{
					ConnectionTTL:        durations["grpc.connectionTTL"],
					InactiveBlockTimeout: durations["intercept.inactiveBlockTimeout"],
					ReportInterval:       durations["activity.reportInterval"],
				},
			})
			if err != nil {
				return err
			}
			if discover {
				dctx, stopDiscovery := context.WithCancel(cmd.Context())
				wait, err := kubesubnets.Watch(dctx, kc, mgr, log)
				if err != nil {
					stopDiscovery()
					mgr.Shutdown()
					return err
				}
				defer func() { stopDiscovery(); wait() }()
			}
			if v.GetBool("kube.watchRules") {
				if kc == nil {
					return errors.New("kube.watchRules needs the manager's Kubernetes credentials: run it in a pod, or give kube.config (--kubeconfig)")
				}
				wctx, stopWatch := context.WithCancel(cmd.Context())
				wait, err := kube.WatchRules(wctx, kc, v.GetString("manager.namespace"), mgr, log)
				if err != nil {
					stopWatch()
					mgr.Shutdown()
					return err
				}
				defer func() { stopWatch(); wait() }()
			}
			if err := serveMetrics(metricsAddr, log, mgr.RegisterMetrics); err != nil {
				return fmt.Errorf("--metrics-addr: %w", err)
			}
			ln, err := net.Listen("tcp", settings.listen)
			if err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			srv := grpc.NewServer(opts...)
			mgr.Register(srv)
			if certFile == "" {
				log.Warn("serving without TLS: tokens and traffic travel in clear text", "component", "manager")
			}
			log.Info("traffic manager started", "component", "manager", "listen", ln.Addr().String(), "subnets", mgr.Subnets(), "kube.discoverSubnets", discover,
				"grpc.connectionTTL", durations["grpc.connectionTTL"], "intercept.inactiveBlockTimeout", durations["intercept.inactiveBlockTimeout"],
				"activity.reportInterval", durations["activity.reportInterval"],
				"grpc.keepaliveTime", durations["grpc.keepaliveTime"], "grpc.keepaliveTimeout", durations["grpc.keepaliveTimeout"],
				"limits", settings.limits)
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err = <-errc:
				return err
			case <-cmd.Context().Done():
			}
			log.Info("traffic manager stopping: ending all flows", "component", "manager")
			mgr.Shutdown()
			stopped := make(chan struct{})
			go func() { srv.GracefulStop(); close(stopped) }()
			ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			defer cancel()
			select {
			case <-stopped:
			case <-ctx.Done():
				srv.Stop()
			}
			log.Info("traffic manager stopped", "component", "manager")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "manager configuration file (YAML)")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address (/metrics)")
	f.StringVar(&logFile, "log-file", "", logFileUsage)
	keys = managerFlags(f)
	return cmd
}

// managerFlags defines the manager's configuration flags and returns their
// keys; `tether config view manager` shares it.
func managerFlags(f *pflag.FlagSet) map[string]string {
	f.String("listen", ":8081", "address to serve daemons on")
	f.StringSlice("subnet", nil, "subnets: cluster subnet to offer (repeatable, CIDR); with Kubernetes credentials added to the discovered ones")
	f.Bool("discover-subnets", true, "kube.discoverSubnets: with Kubernetes credentials, discover the pod networks (Node spec.podCIDRs, pod IPs) and service networks (ServiceCIDRs, else ClusterIPs) and follow their changes")
	f.String("cluster-domain", manager.DefaultClusterDomain, "dns.clusterDomain: the cluster's DNS domain; a session's namespace NS gives the search domains NS.svc.DOMAIN, svc.DOMAIN, DOMAIN")
	f.String("dial-timeout", tunnel.DefaultDialTimeout.String(), "how long to wait for a destination to accept a connection")
	f.String("udp-idle-timeout", tunnel.DefaultUDPIdleTimeout.String(), "end UDP flows idle for this long")
	f.String("connection-ttl", manager.DefaultRules.ConnectionTTL.String(), "grpc.connectionTTL: end sessions inactive for this long")
	f.String("inactive-block-timeout", manager.DefaultRules.InactiveBlockTimeout.String(), "intercept.inactiveBlockTimeout: an owner inactive this long no longer blocks conflicting intercepts")
	f.String("auth-mode", authModeTokenFile, "auth.mode: who decides identity and permissions: tokenfile (auth.tokenFile and rbac.policyFile) or kubernetes (the API server: TokenReview and SubjectAccessReview)")
	f.String("auth-cache-ttl", (10 * time.Second).String(), "auth.cacheTTL: how long the API server's answers (tokens, permissions) are cached with auth.mode kubernetes")
	f.String("token-file", "", "auth.tokenFile: static token file (token,user,uid,\"groups\"); without it, unauthenticated development mode")
	f.Int("max-procs", 0, "runtime.maxProcs: OS threads running Go code at once (0: from 1 up to one per CPU, as the load needs; env GOMAXPROCS wins)")
	f.String("rbac-policy-file", "", "rbac.policyFile: Kubernetes RBAC YAML deciding who may revoke and create intercepts and which workloads each agent serves; needs auth.tokenFile; without it revoke is disabled and agents serve every workload")
	f.Bool("watch-configmap", false, "kube.watchRules: follow the configmap traffic-manager in manager.namespace and apply its rules while running (the Helm chart sets it; needs get/list/watch on it and create on events)")
	f.Bool("insecure-listen-any", false, "grpc.insecureListenAny: without auth.tokenFile, listen on the --listen address even if it is not loopback (a lab only: anyone who reaches it may call as any user or agent)")
	f.StringSlice("dns-domain", manager.DefaultDNSDomains, "dns.domains: DNS domains daemons resolve through the manager (repeatable)")
	f.StringSlice("dns-search", nil, "dns.search: search domains daemons configure for short names, e.g. default.svc.cluster.local (repeatable)")
	f.String("dns-server", "", "dns.server: DNS server (host:port) the manager asks; the system's resolver when empty")
	f.String("kubeconfig", "", "kube.config: kubeconfig of a manager outside the cluster; in a pod its service account is used; either way the rules follow the configmap traffic-manager in manager.namespace")
	f.String("namespace", manager.DefaultNamespace, "manager.namespace: namespace of the traffic-manager configmap that RBAC rules name")
	f.String("tls-cert-file", "", "tls.certFile: serve TLS with this certificate (PEM)")
	f.String("tls-key-file", "", "tls.keyFile: the certificate's key (PEM)")
	f.String("report-interval", manager.DefaultRules.ReportInterval.String(), "activity.reportInterval: how often daemons report")
	f.String("keepalive-time", tunnel.DefaultKeepalive.Time.String(), "grpc.keepaliveTime: ping a client connection silent for this long (at least 1s)")
	f.String("keepalive-timeout", tunnel.DefaultKeepalive.Timeout.String(), "grpc.keepaliveTimeout: close a connection whose ping is unanswered for this long, ending its sessions' streams")
	f.Int("webhook-port", 0, "webhook.port: serve the agent injector (a mutating admission webhook, HTTPS) on this port, inject agents into intercepted workloads and replace their pods that started without one (the chart sets it; needs the manager's Kubernetes credentials); 0: agents are started by hand")
	f.String("agent-image", "", "webhook.agentImage: the injected agents' image, the manager's own (needed with webhook.port)")
	f.String("agent-image-pull-policy", string(corev1.PullIfNotPresent), "webhook.agentImagePullPolicy: the injected agents' imagePullPolicy")
	f.String("agent-manager", "", "webhook.agentManager: the manager's address (host:port) injected agents dial, e.g. traffic-manager.tether.svc:8081 (needed with webhook.port)")
	f.String("agent-ca-file", "", "webhook.agentCAFile: the CA (PEM) that issued the manager's TLS certificate, which injected agents verify it with; empty: agents talk plaintext")
	for _, l := range managerLimits {
		f.Int(l.flag, l.def, l.key+": "+l.usage)
	}
	keys := map[string]string{
		"listen": "listen", "subnets": "subnet",
		"tunnel.dialTimeout": "dial-timeout", "tunnel.udpIdleTimeout": "udp-idle-timeout",
		"grpc.connectionTTL": "connection-ttl", "intercept.inactiveBlockTimeout": "inactive-block-timeout",
		"activity.reportInterval": "report-interval",
		"auth.mode":               "auth-mode", "auth.cacheTTL": "auth-cache-ttl",
		"auth.tokenFile": "token-file", "tls.certFile": "tls-cert-file", "tls.keyFile": "tls-key-file",
		"rbac.policyFile": "rbac-policy-file", "manager.namespace": "namespace", "runtime.maxProcs": "max-procs",
		"dns.domains": "dns-domain", "dns.server": "dns-server", "dns.search": "dns-search",
		"grpc.insecureListenAny": "insecure-listen-any", "kube.config": "kubeconfig", "kube.watchRules": "watch-configmap",
		"kube.discoverSubnets": "discover-subnets", "dns.clusterDomain": "cluster-domain",
		"grpc.keepaliveTime": "keepalive-time", "grpc.keepaliveTimeout": "keepalive-timeout",
		"webhook.port": "webhook-port", "webhook.agentImage": "agent-image", "webhook.agentImagePullPolicy": "agent-image-pull-policy",
		"webhook.agentManager": "agent-manager", "webhook.agentCAFile": "agent-ca-file",
	}
	for _, l := range managerLimits {
		keys[l.key] = l.flag
	}
	return keys
}

// managerLimits are the manager's limits.* keys, each with its field of
// manager.Limits.
var managerLimits = []struct {
	key, flag, usage string
	def              int
	field            func(*manager.Limits) *int
}{
	{"limits.sessionsPerUser", "sessions-per-user", "sessions one user may hold; resuming one is not a new one",
		manager.DefaultLimits.SessionsPerUser, func(l *manager.Limits) *int { return &l.SessionsPerUser }},
	{"limits.tcpFlowsPerSession", "tcp-flows-per-session", "live TCP flows of one session; more are reset",
		manager.DefaultLimits.TCPFlowsPerSession, func(l *manager.Limits) *int { return &l.TCPFlowsPerSession }},
	{"limits.udpFlowsPerSession", "udp-flows-per-session", "UDP flows of one session; a new one ends the least recently used",
		manager.DefaultLimits.UDPFlowsPerSession, func(l *manager.Limits) *int { return &l.UDPFlowsPerSession }},
	{"limits.interceptsPerSession", "intercepts-per-session", "intercepts of one session",
		manager.DefaultLimits.InterceptsPerSession, func(l *manager.Limits) *int { return &l.InterceptsPerSession }},
	{"limits.noticesPerSession", "notices-per-session", "undelivered notices kept for one session (the newest)",
		manager.DefaultLimits.NoticesPerSession, func(l *manager.Limits) *int { return &l.NoticesPerSession }},
}

// managerValues are the manager's keys that need parsing.
type managerValues struct {
	listen    string // where to listen: loopback in development mode
	subnets   []netip.Prefix
	durations map[string]time.Duration // by key
	limits    manager.Limits
	kubeAuth  bool // auth.mode kubernetes
}

// The values of auth.mode.
const (
	authModeTokenFile  = "tokenfile"
	authModeKubernetes = "kubernetes"
)

// managerSettings parses and checks the manager's configuration.
func managerSettings(c *config) (managerValues, error) {
	var mv managerValues
	for _, s := range c.GetStringSlice("subnets") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return mv, c.errorf("subnets", "%q is not a CIDR subnet: %v", s, err)
		}
		mv.subnets = append(mv.subnets, p.Masked())
	}
	mv.durations = map[string]time.Duration{}
	for _, key := range []string{"tunnel.dialTimeout", "tunnel.udpIdleTimeout", "grpc.connectionTTL", "intercept.inactiveBlockTimeout", "activity.reportInterval",
		"grpc.keepaliveTime", "grpc.keepaliveTimeout", "auth.cacheTTL"} {
		d, err := time.ParseDuration(c.GetString(key))
		if err != nil || d <= 0 {
			return mv, c.errorf(key, "%q is not a positive duration (e.g. 5s)", c.GetString(key))
		}
		mv.durations[key] = d
	}
	if d := mv.durations["grpc.keepaliveTime"]; d < tunnel.MinKeepaliveTime {
		return mv, c.errorf("grpc.keepaliveTime", "%s is below gRPC's minimum of %s", d, tunnel.MinKeepaliveTime)
	}
	for _, l := range managerLimits {
		n, err := strconv.Atoi(c.GetString(l.key))
		if err != nil || n <= 0 {
			return mv, c.errorf(l.key, "%q is not a positive whole number", c.GetString(l.key))
		}
		*l.field(&mv.limits) = n
	}
	if (c.GetString("tls.certFile") == "") != (c.GetString("tls.keyFile") == "") {
		return mv, fmt.Errorf("tls.certFile and tls.keyFile go together")
	}
	switch mode := c.GetString("auth.mode"); mode {
	case authModeTokenFile:
	case authModeKubernetes:
		mv.kubeAuth = true
		for _, key := range []string{"auth.tokenFile", "rbac.policyFile"} {
			if c.GetString(key) != "" {
				return mv, c.errorf(key, "is for auth.mode %s; with auth.mode %s the API server decides (remove it, or set auth.mode %s)", authModeTokenFile, authModeKubernetes, authModeTokenFile)
			}
		}
	default:
		return mv, c.errorf("auth.mode", "%q is neither %s nor %s", mode, authModeTokenFile, authModeKubernetes)
	}
	if c.GetString("rbac.policyFile") != "" && c.GetString("auth.tokenFile") == "" {
		return mv, c.errorf("rbac.policyFile", "needs auth.tokenFile (--token-file): without tokens RBAC would judge the user name each client claims")
	}
	var err error
	mv.listen, err = managerListen(c)
	return mv, err
}

// managerListen is the address to listen on. Without auth.tokenFile anyone
// who reaches the manager may call it as any user or agent, so it listens
// on loopback only (":8081" becomes "127.0.0.1:8081") unless
// grpc.insecureListenAny.
func managerListen(c *config) (string, error) {
	addr := c.GetString("listen")
	if c.GetString("auth.tokenFile") != "" || c.GetString("auth.mode") == authModeKubernetes || c.GetBool("grpc.insecureListenAny") {
		return addr, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", c.errorf("listen", "%q is not host:port: %v", addr, err)
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port), nil
	}
	if a, err := netip.ParseAddr(host); host == "localhost" || (err == nil && a.IsLoopback()) {
		return addr, nil
	}
	return "", c.errorf("listen", "%s is not a loopback address, and without auth.tokenFile (--token-file) anyone who reaches the manager may call it as any user or agent; give auth.tokenFile, or grpc.insecureListenAny (--insecure-listen-any) for a lab network", addr)
}

// startInjector serves the agent injector's webhook when webhook.port is
// set, with the repair of pods that started without their agent, and
// returns the manager's Injector (nil without it) and what stops both and
// waits for them.
func startInjector(ctx context.Context, c *config, kc kubernetes.Interface, log *slog.Logger) (manager.Injector, func(), error) {
	port := c.GetInt("webhook.port")
	if port == 0 {
		return nil, func() {}, nil
	}
	if kc == nil {
		return nil, nil, c.errorf("webhook.port", "needs the manager's Kubernetes credentials: run it in a pod, or give kube.config (--kubeconfig)")
	}
	agent := inject.Agent{Image: c.GetString("webhook.agentImage"), PullPolicy: corev1.PullPolicy(c.GetString("webhook.agentImagePullPolicy")),
		Manager: c.GetString("webhook.agentManager")}
	for key, v := range map[string]string{"webhook.agentImage": agent.Image, "webhook.agentManager": agent.Manager} {
		if v == "" {
			return nil, nil, c.errorf(key, "is needed with webhook.port: injected agents run the manager's image and dial its Service")
		}
	}
	if f := c.GetString("webhook.agentCAFile"); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, c.errorf("webhook.agentCAFile", "%v", err)
		}
		if _, err := tunnel.ClientTLS(pem); err != nil {
			return nil, nil, c.errorf("webhook.agentCAFile", "%s: %v", f, err)
		}
		agent.CA = pem
	}
	switch agent.PullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return nil, nil, c.errorf("webhook.agentImagePullPolicy", "%q is not Always, IfNotPresent or Never", agent.PullPolicy)
	}
	ns := c.GetString("manager.namespace")
	wh, err := inject.NewWebhook(kc, ns, ":"+strconv.Itoa(port), agent, log)
	if err != nil {
		return nil, nil, err
	}
	in := inject.New(kc, ns, log)
	wctx, cancel := context.WithCancel(ctx)
	served, repaired := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(served)
		if err := wh.Run(wctx); err != nil {
			log.Error("agent injector stopped", "component", "webhook", "error", err)
		}
	}()
	// Pods of intercepted workloads that started while the webhook was
	// down get their agent: replaced once the webhook is reachable.
	go func() {
		defer close(repaired)
		if err := in.Repair(wctx, wh.Reachable()); err != nil {
			log.Error("agent repair stopped", "component", "repair", "error", err)
		}
	}()
	return in, func() { cancel(); <-served; <-repaired }, nil
}

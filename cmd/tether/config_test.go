package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runTether(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestConfigViewSources(t *testing.T) {
	file := writeFile(t, "manager.yaml", `# manager
subnets: [10.0.0.0/8]
tunnel:
  dialTimeout: 3s
  udpIdleTimeout: 20s
grpc:
  connectionTTL: 2h
`)
	// Env beats the file, the flag beats both.
	t.Setenv("TETHER_GRPC_CONNECTIONTTL", "1h")
	t.Setenv("TETHER_TUNNEL_UDPIDLETIMEOUT", "30s")
	out, err := runTether(t, "config", "view", "manager", "--config", file, "--udp-idle-timeout", "40s")
	if err != nil {
		t.Fatalf("config view: %v\n%s", err, out)
	}
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 3 {
			rows[f[0]] = f[1:]
		}
	}
	for _, tc := range []struct{ key, value, source string }{
		{"tunnel.udpIdleTimeout", "40s", "flag --udp-idle-timeout"},
		{"grpc.connectionTTL", "1h", "env TETHER_GRPC_CONNECTIONTTL"},
		{"tunnel.dialTimeout", "3s", "file " + file + ":4"},
		{"subnets", "10.0.0.0/8", "file " + file + ":2"},
		{"activity.reportInterval", "30s", "default"},
		{"listen", ":8081", "default"},
		{"limits.sessionsPerUser", "8", "default"},
		{"limits.udpFlowsPerSession", "1024", "default"},
		{"grpc.keepaliveTime", "30s", "default"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			row, ok := rows[tc.key]
			if !ok {
				t.Fatalf("no row for %s in\n%s", tc.key, out)
			}
			if row[0] != tc.value || strings.Join(row[1:], " ") != tc.source {
				t.Errorf("%s: %q, want value %q from %q", tc.key, row, tc.value, tc.source)
			}
		})
	}
}

func TestConfigViewRoles(t *testing.T) {
	for _, tc := range []struct {
		args []string
		key  string
	}{
		{[]string{"config", "view"}, "tun.mtu"},
		{[]string{"config", "view", "daemon", "--mtu", "1400"}, "tun.mtu"},
		{[]string{"config", "view", "agent", "--port", "8080"}, "agent.port"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := runTether(t, tc.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !strings.Contains(out, tc.key) {
				t.Errorf("no %s in\n%s", tc.key, out)
			}
		})
	}
	if _, err := runTether(t, "config", "view", "bogus"); err == nil {
		t.Error("config view bogus: no error")
	}
}

// TestConfigErrors checks that a bad value names its key and where it came
// from: file and line (keys case-insensitive), env variable or flag.
func TestConfigErrors(t *testing.T) {
	file := writeFile(t, "manager.yaml", `subnets:
  - 10.0.0.0/8
tunnel:
  dialTimeout: 3s

GRPC:
  ConnectionTtl: 5x
`)
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"file", "", []string{"manager", "--config", file}, file + `:7: grpc.connectionTTL: "5x" is not a positive duration`},
		{"view", "", []string{"config", "view", "manager", "--config", file}, file + `:7: grpc.connectionTTL: "5x"`},
		{"env", "7y", []string{"manager", "--config", file}, `grpc.connectionTTL (env TETHER_GRPC_CONNECTIONTTL): "7y"`},
		{"flag", "", []string{"manager", "--config", file, "--connection-ttl", "9z"}, `grpc.connectionTTL (flag --connection-ttl): "9z"`},
		{"daemon port", "", []string{"config", "view", "daemon", "--ignore-tcp-ports", "53,http"}, `activity.ignoreTCPPorts (flag --ignore-tcp-ports): "http" is not a port number`},
		{"agent port", "", []string{"config", "view", "agent"}, `agent.port: "0" is not a port`},
		{"limit", "", []string{"config", "view", "manager", "--sessions-per-user", "0"}, `limits.sessionsPerUser (flag --sessions-per-user): "0" is not a positive whole number`},
		{"keepalive", "", []string{"config", "view", "manager", "--keepalive-time", "500ms"}, `grpc.keepaliveTime (flag --keepalive-time): 500ms is below gRPC's minimum of 1s`},
		{"route floor", "", []string{"config", "view", "daemon", "--min-prefix-length", "0"}, `routes.minPrefixLength (flag --min-prefix-length): 0 is not an IPv4 prefix length from 1 to 32`},
		{"IPv6 route floor", "", []string{"config", "view", "daemon", "--min-prefix-length-ipv6", "129"}, `routes.minPrefixLengthIPv6 (flag --min-prefix-length-ipv6): 129 is not`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("TETHER_GRPC_CONNECTIONTTL", tc.env)
			}
			out, err := runTether(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q\n%s", err, tc.want, out)
			}
		})
	}
}

func TestYAMLSyntaxError(t *testing.T) {
	file := writeFile(t, "bad.yaml", "tunnel:\n  dialTimeout: [3s\n")
	_, err := runTether(t, "config", "view", "manager", "--config", file)
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "line") {
		t.Errorf("error %v, want the file and line", err)
	}
}

// Without auth.tokenFile the manager listens on loopback only, unless
// grpc.insecureListenAny; a policy needs tokens.
func TestManagerDevelopmentModeListen(t *testing.T) {
	tokens := writeFile(t, "tokens.csv", "t1,alice,1\n")
	for _, tc := range []struct {
		name string
		args []string
		want string // the address, or "error: " and what the error names
	}{
		{"default becomes loopback", nil, "127.0.0.1:8081"},
		{"loopback stays", []string{"--listen", "127.0.0.1:9000"}, "127.0.0.1:9000"},
		{"IPv6 loopback", []string{"--listen", "[::1]:9000"}, "[::1]:9000"},
		{"localhost", []string{"--listen", "localhost:9000"}, "localhost:9000"},
		{"a lab address is refused", []string{"--listen", "198.18.1.2:8081"}, "error: grpc.insecureListenAny (--insecure-listen-any)"},
		{"unless insecure", []string{"--listen", "198.18.1.2:8081", "--insecure-listen-any"}, "198.18.1.2:8081"},
		{"every address if insecure", []string{"--insecure-listen-any"}, ":8081"},
		{"tokens listen anywhere", []string{"--listen", "198.18.1.2:8081", "--token-file", tokens}, "198.18.1.2:8081"},
		{"a policy without tokens", []string{"--listen", "127.0.0.1:1", "--rbac-policy-file", "p.yaml"}, "error: rbac.policyFile (flag --rbac-policy-file): needs auth.tokenFile"},
		{"the API server authenticates", []string{"--listen", "198.18.1.2:8081", "--auth-mode", "kubernetes"}, "198.18.1.2:8081"},
		{"an unknown auth mode", []string{"--auth-mode", "ldap"}, `error: auth.mode (flag --auth-mode): "ldap" is neither tokenfile nor kubernetes`},
		{"a token file in kubernetes mode", []string{"--auth-mode", "kubernetes", "--token-file", tokens}, "error: auth.tokenFile (flag --token-file): is for auth.mode tokenfile"},
		{"a policy in kubernetes mode", []string{"--auth-mode", "kubernetes", "--rbac-policy-file", "p.yaml"}, "error: rbac.policyFile (flag --rbac-policy-file): is for auth.mode tokenfile"},
		{"a bad cache TTL", []string{"--auth-cache-ttl", "soon"}, "error: auth.cacheTTL (flag --auth-cache-ttl)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := pflag.NewFlagSet("manager", pflag.ContinueOnError)
			keys := managerFlags(f)
			if err := f.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			c, err := loadConfig(f, "", keys)
			if err != nil {
				t.Fatal(err)
			}
			mv, err := managerSettings(c)
			if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error %v, want one naming %q", err, want)
				}
				return
			}
			if err != nil || mv.listen != tc.want {
				t.Fatalf("listen %q, %v; want %q", mv.listen, err, tc.want)
			}
		})
	}
}

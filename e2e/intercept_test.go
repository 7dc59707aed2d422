package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/netlab"
)

// member is one developer: a client namespace with a daemon and a local
// server that answers "dev NAME".
type member struct {
	name   string
	ns     string
	socket string
	proc   *netlab.Proc // the daemon
}

// team is a lab with two developers (alice may revoke, bob may not), a
// manager with tokens and RBAC (testdata/policy.yaml), and an agent in
// front of a real app. The token file also holds tokens no process uses:
// carol (a developer), dave (a user who may create no intercept) and
// rogue (an agent bound to no workload).
type team struct {
	*env
	alice, bob *member
}

const (
	appPort   = 18080 // the workload's app, on the pod's loopback
	agentPort = 8080  // the workload port the agent serves
	devPort   = 7000  // each developer's local server
	workload  = "default/web"
)

func newTeam(t *testing.T, rules ...string) *team {
	t.Helper()
	requireLab(t)
	lab, err := netlab.New(netlab.Options{Prefix: "ti", ExtraClients: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, lab: lab, dir: t.TempDir()}
	t.Cleanup(e.close)
	tm := &team{env: e,
		alice: &member{name: "alice", ns: lab.Clients[0], socket: filepath.Join(e.dir, "alice.sock")},
		bob:   &member{name: "bob", ns: lab.Clients[1], socket: filepath.Join(e.dir, "bob.sock")},
	}
	write := func(name, content string) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("tokens.csv", "t-alice,alice,1001,\"devs\"\nt-bob,bob,1002,\"devs\"\nt-carol,carol,1003,\"devs\"\nt-dave,dave,1004\n"+
		"t-agent,agent,2000,\"tether:agents\"\nt-rogue,rogue,2001,\"tether:agents\"\n")
	policy, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	write("policy.yaml", string(policy))
	for _, m := range []*member{tm.alice, tm.bob} {
		write(m.name+".token", "t-"+m.name+"\n")
	}
	write("agent.token", "t-agent\n")

	// The app behind its agent, and each developer's local server. The
	// manager serves daemons on the client link and agents on the pod link.
	for _, m := range []*member{tm.alice, tm.bob} {
		tm.serveText(m.ns, devPort, "dev "+m.name)
	}
	e.startManager(append([]string{"--listen", fmt.Sprintf(":%d", portMgr), "--token-file", filepath.Join(e.dir, "tokens.csv"), "--rbac-policy-file", filepath.Join(e.dir, "policy.yaml")}, rules...)...)
	tm.startAgent(agentPort, appPort, "app")
	for _, m := range []*member{tm.alice, tm.bob} {
		tm.startMemberDaemon(m)
		if out, err := tm.as(m, "connect", "--manager", e.mgrAddr(), "--token-file", filepath.Join(e.dir, m.name+".token")); err != nil {
			t.Fatalf("%s connect: %v\n%s", m.name, err, out)
		}
	}
	return tm
}

// startAgent runs an agent for the workload's port, in front of an app on
// the pod's loopback port app that answers body.
func (tm *team) startAgent(port, app int, body string) {
	tm.t.Helper()
	tm.serveText(tm.lab.Pod, app, body)
	addr := fmt.Sprintf("%s:%d", tm.lab.PodIP, port)
	if _, err := tm.lab.Start(tm.lab.Pod, filepath.Join(tm.dir, fmt.Sprintf("agent-%d.log", port)), tetherBin, "--log-level", "debug", "agent",
		"--manager", fmt.Sprintf("%s:%d", tm.lab.MgrPodIP, portMgr), "--workload", workload, "--port", fmt.Sprint(port),
		"--app", fmt.Sprintf("127.0.0.1:%d", app), "--listen", addr, "--token-file", filepath.Join(tm.dir, "agent.token")); err != nil {
		tm.t.Fatal(err)
	}
	tm.waitTCP(tm.lab.Mgr, addr)
}

// serveText runs an HTTP server on port of namespace ns's loopback that
// answers body: an app, or a developer's local server.
func (tm *team) serveText(ns string, port int, body string) {
	tm.t.Helper()
	ln, err := tm.lab.Listen(ns, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		tm.t.Fatal(err)
	}
	tm.stops = append(tm.stops, netlab.ServeHTTP(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, body) })))
}

// as runs the CLI as member m.
func (tm *team) as(m *member, args ...string) (string, error) {
	return tm.run(m.ns, tetherBin, append([]string{"--socket", m.socket}, args...)...)
}

// request calls the workload's agentPort from inside the cluster (the mgr
// namespace) with the given x-user header ("" for none) and returns the
// body.
func (tm *team) request(user string) string { return tm.requestPort(agentPort, user) }

// requestPort is request to another port of the workload.
func (tm *team) requestPort(port int, user string) string {
	args := []string{"-sS", "--max-time", "5", fmt.Sprintf("http://%s:%d/", tm.lab.PodIP, port)}
	if user != "" {
		args = append(args, "-H", "x-user: "+user)
	}
	out, err := tm.run(tm.lab.Mgr, "curl", args...)
	if err != nil {
		return "error: " + strings.TrimSpace(out)
	}
	return strings.TrimSpace(out)
}

// expectRoutes checks where requests go, by x-user header, waiting briefly
// for agents and daemons to learn of changes (they are told at once; this
// absorbs the propagation).
func (tm *team) expectRoutes(want map[string]string) {
	tm.t.Helper()
	expect(tm, want, tm.request)
}

// expectPorts checks where requests to the workload's ports go.
func (tm *team) expectPorts(want map[int]string) {
	tm.t.Helper()
	expect(tm, want, func(port int) string { return tm.requestPort(port, "") })
}

// expect waits until get(key) is want[key] for every key.
func expect[K comparable](tm *team, want map[K]string, get func(K) string) {
	tm.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := map[K]string{}
		ok := true
		for key, body := range want {
			got[key] = get(key)
			ok = ok && got[key] == body
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("routes: got %v, want %v", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (tm *team) intercept(m *member, name string, args ...string) (string, error) {
	return tm.as(m, append([]string{"intercept", name, "--workload", workload, "--port", fmt.Sprint(agentPort), "--to", fmt.Sprint(devPort)}, args...)...)
}

func (tm *team) list(m *member) []map[string]any {
	tm.t.Helper()
	out, err := tm.as(m, "--no-activity", "list", "--json")
	if err != nil {
		tm.t.Fatalf("list: %v\n%s", err, out)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		tm.t.Fatalf("list --json: %v\n%s", err, out)
	}
	return rows
}

func (tm *team) stateOf(m *member, name string) (state, message string) {
	for _, r := range tm.list(m) {
		if r["name"] == name && r["owner_user"] == m.name {
			s, _ := r["state"].(string)
			msg, _ := r["message"].(string)
			return s, msg
		}
	}
	return "", ""
}

// TestIntercepts walks the team rules in order with short timeouts.
func TestIntercepts(t *testing.T) {
	tm := newTeam(t, "--inactive-block-timeout", "3s", "--report-interval", "500ms", "--connection-ttl", "5m")
	tm.expectRoutes(map[string]string{"": "app", "alice": "app"})

	// Disjoint header filters: each gets its own traffic; the rest goes to the app.
	if out, err := tm.intercept(tm.alice, "a", "--http-header", "x-user=alice"); err != nil {
		t.Fatalf("alice intercept: %v\n%s", err, out)
	}
	if out, err := tm.intercept(tm.bob, "b", "--http-header", "x-user=bob"); err != nil {
		t.Fatalf("bob intercept: %v\n%s", err, out)
	}
	tm.expectRoutes(map[string]string{"alice": "dev alice", "bob": "dev bob", "carol": "app", "": "app"})

	// A too-broad filter is refused while alice is active, naming her.
	out, err := tm.intercept(tm.bob, "wide", "--http-header", "x-user=.*ice")
	if err == nil || !strings.Contains(out, "alice@") || !strings.Contains(out, "alice") || !strings.Contains(out, "idle") {
		t.Fatalf("too-broad intercept while alice is active: %v\n%s", err, out)
	}

	// A keepalive script on alice's laptop (a new TCP connection into the
	// cluster every second) keeps her block right past the block timeout.
	for range 5 {
		tm.run(tm.alice.ns, "curl", "-sS", "--max-time", "2", "-o", "/dev/null", fmt.Sprintf("http://%s:%d/", tm.lab.PodIP, agentPort))
		time.Sleep(time.Second)
	}
	if out, err := tm.intercept(tm.bob, "wide", "--http-header", "x-user=.*ice"); err == nil {
		t.Fatalf("alice's keepalive did not keep her block right:\n%s", out)
	}

	// Inbound requests to alice's intercept do not keep her active: after
	// the block timeout of such traffic alone, bob's filter wins.
	for range 8 {
		if got := tm.request("alice"); got != "dev alice" {
			t.Fatalf("alice's intercept got %q", got)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out, err := tm.intercept(tm.bob, "wide", "--http-header", "x-user=.*ice"); err != nil {
		t.Fatalf("bob's filter did not win over idle alice: %v\n%s", err, out)
	}
	tm.expectRoutes(map[string]string{"alice": "dev bob", "bob": "dev bob", "": "app"})
	if st, msg := tm.stateOf(tm.alice, "a"); st != "CONFLICT" || !strings.Contains(msg, "superseded") {
		t.Fatalf("alice's intercept: %s %q, want CONFLICT with a message", st, msg)
	}

	// When bob's wide filter ends, alice's intercept is restored by itself.
	if out, err := tm.as(tm.bob, "leave", "wide"); err != nil {
		t.Fatalf("leave: %v\n%s", err, out)
	}
	tm.expectRoutes(map[string]string{"alice": "dev alice", "bob": "dev bob"})
	if st, _ := tm.stateOf(tm.alice, "a"); st != "ACTIVE" {
		t.Fatalf("alice's intercept after bob left: %s", st)
	}

	// Revoke: refused for bob (no RBAC), done for alice; bob sees who did it.
	var bobID string
	for _, r := range tm.list(tm.alice) {
		if r["owner_user"] == "bob" {
			bobID, _ = r["id"].(string)
		}
	}
	var aliceID string
	for _, r := range tm.list(tm.alice) {
		if r["owner_user"] == "alice" {
			aliceID, _ = r["id"].(string)
		}
	}
	out, err = tm.as(tm.bob, "revoke", aliceID)
	if err == nil || !strings.Contains(out, "bob") || !strings.Contains(out, "configmaps") {
		t.Fatalf("revoke by bob: %v\n%s", err, out)
	}
	if out, err := tm.as(tm.alice, "revoke", bobID); err != nil {
		t.Fatalf("revoke by alice: %v\n%s", err, out)
	}
	tm.expectRoutes(map[string]string{"bob": "app", "alice": "dev alice"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := tm.as(tm.bob, "--no-activity", "status")
		if strings.Contains(out, "revoked by alice at") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's status does not say who revoked:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestReplaceInterceptPorts: a replace intercept takes every port of the
// workload, each to a local port: its own to --to, one mapped with
// --to-port, any other to the same port number; leaving gives them all back.
func TestReplaceInterceptPorts(t *testing.T) {
	const (
		grpcPort    = 9090 // mapped with --to-port
		grpcApp     = 19090
		devGRPC     = 7001
		metricsPort = 9100 // not mapped: the same port on the laptop
		metricsApp  = 19100
	)
	tm := newTeam(t)
	tm.startAgent(grpcPort, grpcApp, "app 9090")
	tm.startAgent(metricsPort, metricsApp, "app 9100")
	tm.serveText(tm.alice.ns, devGRPC, "dev alice 7001")
	tm.serveText(tm.alice.ns, metricsPort, "dev alice 9100")
	tm.expectPorts(map[int]string{agentPort: "app", grpcPort: "app 9090", metricsPort: "app 9100"})

	out, err := tm.intercept(tm.alice, "r", "--replace", "--to-port", fmt.Sprintf("%d=%d", grpcPort, devGRPC))
	if err != nil {
		t.Fatalf("replace intercept: %v\n%s", err, out)
	}
	tm.expectPorts(map[int]string{agentPort: "dev alice", grpcPort: "dev alice 7001", metricsPort: "dev alice 9100"})
	status, _ := tm.as(tm.alice, "--no-activity", "status")
	if want := fmt.Sprintf("other ports: %d -> 127.0.0.1:%d, %d -> 127.0.0.1:%d", grpcPort, devGRPC, metricsPort, metricsPort); !strings.Contains(status, want) {
		t.Errorf("status does not say %q:\n%s", want, status)
	}
	// A map needs --replace.
	if out, err := tm.intercept(tm.bob, "g", "--to-port", "9090=7001"); err == nil || !strings.Contains(out, "--replace") {
		t.Errorf("--to-port without --replace: %v\n%s", err, out)
	}

	if out, err := tm.as(tm.alice, "leave", "r"); err != nil {
		t.Fatalf("leave: %v\n%s", err, out)
	}
	tm.expectPorts(map[int]string{agentPort: "app", grpcPort: "app 9090", metricsPort: "app 9100"})
}

// TestInterceptsEndWithSession: when the session's TTL runs out its
// intercepts go, and the agent routes to the app again.
func TestInterceptsEndWithSession(t *testing.T) {
	tm := newTeam(t, "--connection-ttl", "4s", "--report-interval", "500ms", "--inactive-block-timeout", "2s")
	if out, err := tm.intercept(tm.alice, "a"); err != nil {
		t.Fatalf("intercept: %v\n%s", err, out)
	}
	tm.expectRoutes(map[string]string{"": "dev alice"})
	time.Sleep(5 * time.Second)
	tm.expectRoutes(map[string]string{"": "app"})
	// Both sessions expired; a fresh one sees no intercept left.
	if out, err := tm.as(tm.bob, "connect", "--manager", tm.mgrAddr(), "--token-file", filepath.Join(tm.dir, "bob.token")); err != nil {
		t.Fatalf("reconnect: %v\n%s", err, out)
	}
	if rows := tm.list(tm.bob); len(rows) != 0 {
		t.Fatalf("intercepts left after the session ended: %v", rows)
	}
}

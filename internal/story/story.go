// Package story is `make demo`: the rules Tether exists for, told as two
// developers sharing one workload, with short timeouts. Each step checks
// its own outcome; [Tell] returns an error naming the first step that went
// wrong, so the e2e tests run it too (e2e/demo_test.go). It is told on a
// [Stage]: [Run] builds the lab of network namespaces (internal/netlab) of
// make demo; internal/kubestage the test cluster of make demo-k8s.
//
// The cast: alice, bob and carol on three laptops, a traffic manager that
// knows them and lets only carol revoke (in the lab: a token file and an
// RBAC policy, tokens.csv and policy.yaml beside this file), and the
// workload default/web (in the lab: an app on the pod's loopback behind its
// agent on 198.18.2.2:8080).
package story

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/netlab"
)

// The manager's rules, short enough for a story of about a minute.
const (
	BlockTimeout   = 8 * time.Second  // intercept.inactiveBlockTimeout
	TTL            = 30 * time.Second // grpc.connectionTTL
	ReportInterval = time.Second      // activity.reportInterval
)

const (
	mgrPort  = 8081
	webPort  = 8080  // default/web's port, served by its agent
	appPort  = 18080 // the app behind the agent, on the pod's loopback
	devPort  = 7000  // each developer's local server
	workload = "default/web"

	// The header filters: alice's and bob's are disjoint; bob's wide one
	// takes every user whose name starts with an "a", alice's requests too.
	wideFilter = "x-user=a.*"
)

var (
	//go:embed tokens.csv
	tokens string
	//go:embed policy.yaml
	policy string
)

// Options configures [Run].
type Options struct {
	// Tether is the tether binary.
	Tether string
	// Out gets the narration, one line per step, and on failure the tail of
	// every log.
	Out io.Writer
}

// Stage is where the story is told: the namespace lab of make demo ([Run]),
// or the test cluster of make demo-k8s (package internal/kubestage). The
// story starts a daemon and a local server on devPort in each laptop; the
// stage provides the traffic manager and the workload default/web, whose
// port 8080 reaches an app answering "hello from the app" until someone
// intercepts it.
type Stage struct {
	// Lab starts the story's processes and sockets in the laptops. A stage
	// in namespaces made by others uses the zero Lab.
	Lab *netlab.Lab
	// Laptops are the namespaces of alice's, bob's and carol's laptops.
	Laptops [3]string
	// Dir holds the sockets and logs; every *.log in it is printed when a
	// step fails.
	Dir string
	// SetUp starts the traffic manager and default/web and says where.
	SetUp func(ctx context.Context) (string, error)
	// Env is the environment of a developer's tether commands beyond the
	// story's own (e.g. KUBECONFIG); nil for none.
	Env func(user string) []string
	// ConnectArgs follow `tether connect` for a developer.
	ConnectArgs func(user string) []string
	// Routes says in the narration what a connected laptop routes.
	Routes string
	// Request calls default/web from inside the cluster with header x-user
	// (none when user is empty) and returns the answer's body.
	Request func(ctx context.Context, user string) string
	// URL is default/web as a laptop reaches it through Tether.
	URL string
	// Settle bounds how long a change of intercepts takes to reach the
	// requests (an agent injected into a real workload waits for a rollout).
	Settle time.Duration
	// CollectLogs, when set, writes logs kept elsewhere (a pod's) into Dir
	// before a failure prints them.
	CollectLogs func()
}

// laptop is one developer's machine: a client namespace with a daemon and
// a local server on devPort that answers "hello from NAME's laptop".
type laptop struct {
	name   string
	ns     string
	socket string
}

// story is one run: the stage, the cast, the narration.
type story struct {
	ctx               context.Context
	stage             Stage
	bin               string
	out               io.Writer
	start             time.Time
	alice, bob, carol *laptop
	// aliceLastActive is when alice's keepalive script stopped: her last
	// activity, from which her TTL runs.
	aliceLastActive time.Time
}

// Run tells the story in a lab of network namespaces. It removes every
// namespace, process and file it made before it returns, also when a step
// fails or ctx is cancelled (Ctrl-C in the demo command).
func Run(ctx context.Context, opts Options) (err error) {
	if err := netlab.Available(); err != nil {
		return fmt.Errorf("the lab needs root, iproute2 and /dev/net/tun: %w", err)
	}
	bin, err := filepath.Abs(opts.Tether)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tether-story-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lab, err := netlab.New(netlab.Options{Prefix: "story-", ExtraClients: 2})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, lab.Close()) }()
	stop, err := serve(lab, lab.Pod, appPort, "hello from the app")
	if err != nil {
		return err
	}
	defer stop()
	mgrAddr := net.JoinHostPort(lab.MgrIP.String(), fmt.Sprint(mgrPort))
	webURL := fmt.Sprintf("http://%s/", net.JoinHostPort(lab.PodIP.String(), fmt.Sprint(webPort)))
	st := Stage{
		Lab:     lab,
		Laptops: [3]string(lab.Clients),
		Dir:     dir,
		SetUp:   func(context.Context) (string, error) { return setUpLab(lab, bin, dir) },
		ConnectArgs: func(user string) []string {
			return []string{"--manager", mgrAddr, "--token-file", filepath.Join(dir, user+".token")}
		},
		Routes: lab.PodNet.String(),
		Request: func(ctx context.Context, user string) string {
			return Curl(ctx, lab, lab.Mgr, webURL, user)
		},
		URL:    webURL,
		Settle: 5 * time.Second,
	}
	for _, name := range []string{"alice", "bob", "carol"} {
		if err := os.WriteFile(filepath.Join(dir, name+".token"), []byte("t-"+name+"\n"), 0o600); err != nil {
			return err
		}
	}
	return Tell(ctx, st, bin, opts.Out)
}

// Tell tells the story on a stage. It stops the processes and servers it
// started before it returns; the stage's own are its maker's to remove.
func Tell(ctx context.Context, st Stage, tether string, out io.Writer) (err error) {
	if _, err := exec.LookPath("curl"); err != nil {
		return errors.New("curl is not installed (apt-get install -y curl)")
	}
	if _, err := os.Stat(tether); err != nil {
		return fmt.Errorf("the tether binary: %w (make build)", err)
	}
	s := &story{ctx: ctx, stage: st, bin: tether, out: out, start: time.Now()}
	// Deferred calls run in reverse: the processes go first, so the logs
	// are complete when a failure prints them.
	defer func() {
		switch {
		case ctx.Err() != nil:
			fmt.Fprintln(s.out, "interrupted; cleaning up")
		case err != nil:
			s.printLogs()
		}
	}()
	var procs []*netlab.Proc
	defer func() {
		// quit ends what a connect started beside the daemon (a
		// port-forward of the user's, say), then the daemons stop.
		for _, l := range []*laptop{s.alice, s.bob, s.carol} {
			if l != nil {
				// Also after Ctrl-C, which cancelled s.ctx.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, _ = s.run(ctx, l, "quit")
				cancel()
			}
		}
		for _, p := range procs {
			_ = p.Stop()
		}
	}()
	for i, name := range []string{"alice", "bob", "carol"} {
		l := &laptop{name: name, ns: st.Laptops[i], socket: filepath.Join(st.Dir, name+".sock")}
		switch name {
		case "alice":
			s.alice = l
		case "bob":
			s.bob = l
		default:
			s.carol = l
		}
		stop, err := serve(st.Lab, l.ns, devPort, "hello from "+name+"'s laptop")
		if err != nil {
			return err
		}
		defer stop()
		p, err := st.Lab.Start(l.ns, s.log(name+"-daemon"), s.bin, "--socket", l.socket, "daemon", "--tun-name", "tether-"+name)
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	return s.tell(&procs)
}

// serve answers HTTP on ns's loopback with body.
func serve(lab *netlab.Lab, ns string, port int, body string) (stop func(), err error) {
	ln, err := lab.Listen(ns, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	return netlab.ServeHTTP(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, body)
	})), nil
}

// tell runs the steps; procs gets what they start in the background.
func (s *story) tell(procs *[]*netlab.Proc) error {
	for _, step := range []struct {
		title string
		do    func() (string, error)
	}{
		{"a cluster: default/web, a traffic manager, three laptops", s.setUp},
		{"alice and bob connect from two laptops", s.connect},
		{"both intercept default/web with disjoint header filters; each gets only their own requests", s.disjoint},
		{"bob's too-broad filter " + wideFilter + " is refused", s.refused},
		{"alice goes idle; her laptop still serves her requests, which do not count", s.aliceIdles},
		{"bob tries again: his filter wins and alice's intercept is flagged CONFLICT", s.bobWins},
		{"bob leaves: alice's intercept returns to ACTIVE by itself", s.bobLeaves},
		{"a keepalive script on alice's laptop keeps her block right", func() (string, error) { return s.keepalive(procs) }},
		{"carol, with RBAC, revokes alice's intercept; alice's status says so", s.revoke},
		{"alice's session expires at the TTL", s.expire},
	} {
		if err := s.step(step.title, step.do); err != nil {
			return err
		}
	}
	fmt.Fprintf(s.out, "[%3.0fs] the story is done; cleaning up\n", time.Since(s.start).Seconds())
	return nil
}

// step runs do and narrates its outcome on one line.
func (s *story) step(title string, do func() (string, error)) error {
	detail, err := do()
	at := time.Since(s.start).Seconds()
	if err == nil {
		err = s.ctx.Err()
	}
	if err != nil {
		fmt.Fprintf(s.out, "[%3.0fs] FAIL %s: %v\n", at, title, err)
		return fmt.Errorf("%s: %w", title, err)
	}
	fmt.Fprintf(s.out, "[%3.0fs] %s: %s\n", at, title, detail)
	return nil
}

// setUpLab starts the manager and default/web's agent in the lab.
func setUpLab(lab *netlab.Lab, bin, dir string) (string, error) {
	write := func(name, content string) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, []byte(content), 0o600)
	}
	tokenFile, err := write("tokens.csv", tokens)
	if err != nil {
		return "", err
	}
	policyFile, err := write("policy.yaml", policy)
	if err != nil {
		return "", err
	}
	agentToken, err := write("agent-web.token", "t-agent-web\n")
	if err != nil {
		return "", err
	}
	log := func(name string) string { return filepath.Join(dir, name+".log") }
	if _, err := lab.Start(lab.Mgr, log("manager"), bin, "manager", "--listen", fmt.Sprintf(":%d", mgrPort),
		"--subnet", lab.PodNet.String(), "--token-file", tokenFile, "--rbac-policy-file", policyFile,
		"--inactive-block-timeout", BlockTimeout.String(), "--connection-ttl", TTL.String(),
		"--report-interval", ReportInterval.String()); err != nil {
		return "", err
	}
	if err := waitTCP(lab, lab.Pod, net.JoinHostPort(lab.MgrPodIP.String(), fmt.Sprint(mgrPort))); err != nil {
		return "", fmt.Errorf("the traffic manager does not listen: %w", err)
	}
	agentAddr := net.JoinHostPort(lab.PodIP.String(), fmt.Sprint(webPort))
	if _, err := lab.Start(lab.Pod, log("agent"), bin, "agent",
		"--manager", net.JoinHostPort(lab.MgrPodIP.String(), fmt.Sprint(mgrPort)), "--token-file", agentToken,
		"--workload", workload, "--port", fmt.Sprint(webPort), "--app", fmt.Sprintf("127.0.0.1:%d", appPort),
		"--listen", agentAddr); err != nil {
		return "", err
	}
	if err := waitTCP(lab, lab.Mgr, agentAddr); err != nil {
		return "", fmt.Errorf("the agent does not listen: %w", err)
	}
	return fmt.Sprintf("web at %s behind its agent, block timeout %s, TTL %s, laptops %s", agentAddr, BlockTimeout, TTL, joinAddrs(lab)), nil
}

func (s *story) setUp() (string, error) {
	detail, err := s.stage.SetUp(s.ctx)
	if err != nil {
		return "", err
	}
	for _, l := range []*laptop{s.alice, s.bob, s.carol} {
		if err := s.waitFor(10*time.Second, func() error {
			_, err := s.tether(l, "--no-activity", "status")
			return err
		}); err != nil {
			return "", fmt.Errorf("%s's daemon does not answer: %w", l.name, err)
		}
	}
	if err := s.waitFor(s.stage.Settle, func() error {
		if got := s.request(""); got != "hello from the app" {
			return fmt.Errorf("default/web answers %q, want the app", got)
		}
		return nil
	}); err != nil {
		return "", err
	}
	return detail, nil
}

func (s *story) connect() (string, error) {
	var parts []string
	for _, l := range []*laptop{s.alice, s.bob} {
		if err := s.connectLaptop(l); err != nil {
			return "", err
		}
		parts = append(parts, l.name+" routes "+s.stage.Routes)
	}
	return strings.Join(parts, ", "), nil
}

func (s *story) connectLaptop(l *laptop) error {
	if out, err := s.tether(l, append([]string{"connect"}, s.stage.ConnectArgs(l.name)...)...); err != nil {
		return fmt.Errorf("%s: %w\n%s", l.name, err, out)
	}
	st, err := s.status(l)
	if err != nil {
		return err
	}
	if st.User != l.name || !st.Connected {
		return fmt.Errorf("%s's status: connected %v as %q", l.name, st.Connected, st.User)
	}
	return nil
}

func (s *story) disjoint() (string, error) {
	for _, l := range []*laptop{s.alice, s.bob} {
		if out, err := s.intercept(l, l.name+"-web", "x-user="+l.name); err != nil {
			return "", fmt.Errorf("%s: %w\n%s", l.name, err, out)
		}
	}
	want := map[string]string{"alice": "hello from alice's laptop", "bob": "hello from bob's laptop", "dave": "hello from the app", "": "hello from the app"}
	if err := s.expectRoutes(want); err != nil {
		return "", err
	}
	return "x-user alice -> alice's laptop, bob -> bob's, anyone else -> the app", nil
}

func (s *story) refused() (string, error) {
	// alice is at work: her CLI counts as activity. On a cluster the
	// intercepts waited for web's rollout, which may take a while.
	if out, err := s.tether(s.alice, "status"); err != nil {
		return "", fmt.Errorf("alice's status: %w\n%s", err, out)
	}
	out, err := s.intercept(s.bob, "bob-wide", wideFilter)
	if err == nil {
		return "", fmt.Errorf("bob's wide intercept was accepted while alice is active:\n%s", out)
	}
	for _, want := range []string{"alice@", "alice has been idle for", "the block lapses at"} {
		if !strings.Contains(out, want) {
			return "", fmt.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	return "\"" + from(out, "alice has been idle") + "\"", nil
}

func (s *story) aliceIdles() (string, error) {
	// Her requests keep arriving on her laptop while she does nothing;
	// status checks run with --no-activity.
	start, served := time.Now(), 0
	for time.Since(start) < BlockTimeout+2*ReportInterval {
		if got := s.request("alice"); got != "hello from alice's laptop" {
			return "", fmt.Errorf("alice's request got %q", got)
		}
		served++
		if err := s.sleep(500 * time.Millisecond); err != nil {
			return "", err
		}
	}
	var st statusJSON
	err := s.waitFor(5*time.Second, func() (err error) {
		if st, err = s.status(s.alice); err != nil {
			return err
		}
		if v := st.ManagerView; v == nil || v.HoldsBlockRight {
			return fmt.Errorf("the manager still gives alice the block right: %+v", v)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if st.Counters.InboundFlows == 0 {
		return "", errors.New("alice's laptop counted no inbound flows")
	}
	return fmt.Sprintf("her laptop served %d requests; the manager says %s, idle %.0fs, no block right",
		served, st.ManagerView.State, st.ManagerView.IdleSeconds), nil
}

func (s *story) bobWins() (string, error) {
	if out, err := s.intercept(s.bob, "bob-wide", wideFilter); err != nil {
		return "", fmt.Errorf("bob's wide intercept was refused over idle alice: %w\n%s", err, out)
	}
	if err := s.expectRoutes(map[string]string{"alice": "hello from bob's laptop", "bob": "hello from bob's laptop"}); err != nil {
		return "", err
	}
	state, msg, err := s.interceptState(s.alice, "alice-web")
	if err != nil {
		return "", err
	}
	if state != "CONFLICT" || !strings.Contains(msg, "superseded by intercept \"bob-wide\"") {
		return "", fmt.Errorf("alice's intercept is %s %q, want CONFLICT superseded by bob-wide", state, msg)
	}
	return "alice's requests go to bob; alice's list says CONFLICT: \"" + cut(msg, "; a request") + "\"", nil
}

func (s *story) bobLeaves() (string, error) {
	if out, err := s.tether(s.bob, "leave", "bob-wide"); err != nil {
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	if err := s.expectRoutes(map[string]string{"alice": "hello from alice's laptop", "bob": "hello from bob's laptop"}); err != nil {
		return "", err
	}
	state, msg, err := s.interceptState(s.alice, "alice-web")
	if err != nil {
		return "", err
	}
	if state != "ACTIVE" {
		return "", fmt.Errorf("alice's intercept is %s %q, want ACTIVE", state, msg)
	}
	return "alice's requests reach her laptop again: \"" + msg + "\"", nil
}

// keepaliveScript opens a new TCP connection into the cluster every second,
// a bounded number of times: new outbound TCP connections are activity.
func keepaliveScript(url string) string {
	return fmt.Sprintf("for i in $(seq 60); do curl -s -o /dev/null --max-time 2 %s; sleep 1; done", url)
}

func (s *story) keepalive(procs *[]*netlab.Proc) (string, error) {
	p, err := s.stage.Lab.Start(s.alice.ns, s.log("alice-keepalive"), "sh", "-c", keepaliveScript(s.stage.URL))
	if err != nil {
		return "", err
	}
	*procs = append(*procs, p)
	// Longer than the block timeout: only the script can have kept it.
	err = s.sleep(BlockTimeout + 2*ReportInterval)
	out, ierr := s.intercept(s.bob, "bob-wide", wideFilter)
	if serr := p.Stop(); serr != nil && err == nil {
		err = fmt.Errorf("the keepalive script: %w", serr)
	}
	s.aliceLastActive = time.Now()
	if err != nil {
		return "", err
	}
	if ierr == nil {
		return "", fmt.Errorf("bob's wide intercept was accepted over alice's keepalive:\n%s", out)
	}
	if !strings.Contains(out, "alice has been idle for") {
		return "", fmt.Errorf("the refusal does not name alice's idle time:\n%s", out)
	}
	return fmt.Sprintf("after %s of `%s`, bob is refused again: \"%s\"", BlockTimeout+2*ReportInterval, "curl every 1s", cut(from(out, "alice has been idle"), ";")), nil
}

func (s *story) revoke() (string, error) {
	// carol connects only now: her session must not expire before she acts.
	if err := s.connectLaptop(s.carol); err != nil {
		return "", err
	}
	rows, err := s.list(s.carol)
	if err != nil {
		return "", err
	}
	var id string
	for _, r := range rows {
		if r.OwnerUser == "alice" && r.Name == "alice-web" {
			id = r.ID
		}
	}
	if id == "" {
		return "", fmt.Errorf("carol's list has no intercept alice-web of alice: %+v", rows)
	}
	// bob has no RBAC for it: refused, naming what is missing.
	if out, err := s.tether(s.bob, "revoke", id); err == nil || !strings.Contains(out, "configmaps") {
		return "", fmt.Errorf("bob's revoke was not refused for want of RBAC: %v\n%s", err, out)
	}
	if out, err := s.tether(s.carol, "revoke", id); err != nil {
		return "", fmt.Errorf("carol's revoke: %w\n%s", err, out)
	}
	if err := s.expectRoutes(map[string]string{"alice": "hello from the app", "bob": "hello from bob's laptop"}); err != nil {
		return "", err
	}
	var notice string
	err = s.waitFor(5*time.Second, func() error {
		st, err := s.status(s.alice)
		if err != nil {
			return err
		}
		for _, n := range st.Notices {
			if strings.Contains(n, "revoked by carol at") {
				notice = n
				return nil
			}
		}
		return fmt.Errorf("alice's status has no notice of the revoke: %q", st.Notices)
	})
	if err != nil {
		return "", err
	}
	return "bob was refused (no RBAC); alice's status: \"" + notice + "\"", nil
}

func (s *story) expire() (string, error) {
	var st statusJSON
	err := s.waitFor(TTL+10*time.Second, func() (err error) {
		if st, err = s.status(s.alice); err != nil {
			return err
		}
		if st.Connected {
			return errors.New("alice is still connected")
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if !strings.Contains(st.Reason, "grpc.connectionTTL") {
		return "", fmt.Errorf("alice's session ended for another reason: %q", st.Reason)
	}
	// Her last activity was the keepalive's last connection; status calls
	// with --no-activity did not count, nor did carol's revoke.
	idle := time.Since(s.aliceLastActive)
	if idle < TTL-3*ReportInterval {
		return "", fmt.Errorf("alice's session ended %s after her last activity, before the TTL of %s", idle.Round(time.Second), TTL)
	}
	return fmt.Sprintf("%.0fs after her keepalive stopped, alice's status: \"%s\"", idle.Seconds(), st.Reason), nil
}

// tether runs the CLI on laptop l.
func (s *story) tether(l *laptop, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	return s.run(ctx, l, args...)
}

// run runs the CLI on laptop l for as long as ctx allows.
func (s *story) run(ctx context.Context, l *laptop, args ...string) (string, error) {
	args = append([]string{"--socket", l.socket}, args...)
	if s.stage.Env == nil {
		return s.stage.Lab.Run(ctx, l.ns, s.bin, args...)
	}
	return s.stage.Lab.Run(ctx, l.ns, "env", append(append(s.stage.Env(l.name), s.bin), args...)...)
}

func (s *story) intercept(l *laptop, name, header string) (string, error) {
	return s.tether(l, "intercept", name, "--workload", workload, "--port", fmt.Sprint(webPort), "--to", fmt.Sprint(devPort), "--http-header", header)
}

// statusJSON is the part of `tether status --json` the story reads.
type statusJSON struct {
	Connected   bool     `json:"connected"`
	Reason      string   `json:"reason"`
	User        string   `json:"user"`
	Notices     []string `json:"notices"`
	ManagerView *struct {
		State           string  `json:"state"`
		IdleSeconds     float64 `json:"idle_seconds"`
		HoldsBlockRight bool    `json:"holds_block_right"`
	} `json:"manager_view"`
	Counters struct {
		InboundFlows uint64 `json:"inbound_flows"`
	} `json:"counters"`
}

// status is l's `tether status --json`, without counting as activity.
func (s *story) status(l *laptop) (statusJSON, error) {
	var st statusJSON
	out, err := s.tether(l, "--no-activity", "status", "--json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("status --json: %w\n%s", err, out)
	}
	return st, nil
}

type interceptRow struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	OwnerUser string `json:"owner_user"`
	State     string `json:"state"`
	Message   string `json:"message"`
}

// list is l's `tether list --json`, without counting as activity.
func (s *story) list(l *laptop) ([]interceptRow, error) {
	out, err := s.tether(l, "--no-activity", "list", "--json")
	if err != nil {
		return nil, err
	}
	var rows []interceptRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return nil, fmt.Errorf("list --json: %w\n%s", err, out)
	}
	return rows, nil
}

// interceptState is the state and message of l's intercept name.
func (s *story) interceptState(l *laptop, name string) (state, message string, err error) {
	rows, err := s.list(l)
	if err != nil {
		return "", "", err
	}
	for _, r := range rows {
		if r.Name == name && r.OwnerUser == l.name {
			return r.State, r.Message, nil
		}
	}
	return "", "", fmt.Errorf("%s has no intercept %q", l.name, name)
}

// request calls default/web from inside the cluster with an x-user header
// ("" for none) and returns the answer.
func (s *story) request(user string) string { return s.stage.Request(s.ctx, user) }

// Curl GETs url from namespace ns with an x-user header ("" for none) and
// returns the body, or "error: " and what curl said.
func Curl(ctx context.Context, lab *netlab.Lab, ns, url, user string) string {
	args := []string{"-sS", "--max-time", "5", url}
	if user != "" {
		args = append(args, "-H", "x-user: "+user)
	}
	out, err := lab.Run(ctx, ns, "curl", args...)
	if err != nil {
		return "error: " + strings.TrimSpace(out)
	}
	return strings.TrimSpace(out)
}

// expectRoutes waits until each x-user header's request gets its answer:
// agents and daemons are told of changes at once; this absorbs the
// propagation.
func (s *story) expectRoutes(want map[string]string) error {
	return s.waitFor(s.stage.Settle, func() error {
		for user, body := range want {
			if got := s.request(user); got != body {
				return fmt.Errorf("a request with x-user %q got %q, want %q", user, got, body)
			}
		}
		return nil
	})
}

// waitFor calls fn until it returns nil, for at most timeout; the error is
// fn's last.
func (s *story) waitFor(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) || s.ctx.Err() != nil {
			return err
		}
		if err := s.sleep(200 * time.Millisecond); err != nil {
			return err
		}
	}
}

func (s *story) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func waitTCP(lab *netlab.Lab, ns, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := lab.DialContext(ctx, ns, "tcp", addr)
		cancel()
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *story) log(name string) string { return filepath.Join(s.stage.Dir, name+".log") }

// printLogs writes the last lines of every log, for a failed run.
func (s *story) printLogs() {
	if s.stage.CollectLogs != nil {
		s.stage.CollectLogs()
	}
	logs, _ := filepath.Glob(filepath.Join(s.stage.Dir, "*.log"))
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		fmt.Fprintf(s.out, "--- last lines of %s\n%s\n", filepath.Base(p), strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
}

func joinAddrs(lab *netlab.Lab) string {
	var parts []string
	for _, a := range lab.ClientIPs {
		parts = append(parts, a.String())
	}
	return strings.Join(parts, ", ")
}

// from is s from the first sub on (all of s if sub is missing), on one line.
func from(s, sub string) string {
	if i := strings.Index(s, sub); i >= 0 {
		s = s[i:]
	}
	return strings.TrimSpace(strings.ReplaceAll(s, "\n", " "))
}

// cut is s up to the first sep.
func cut(s, sep string) string {
	before, _, _ := strings.Cut(s, sep)
	return before
}

package e2e

// Benchmarks in the namespace lab. Each measures through the VIF and, where
// the same measurement exists without Tether, "direct": the same client
// program in the client namespace talking to a server in the mgr namespace at
// MgrIP, over the veth between them, no TUN involved. Every benchmark reports
// its numbers with b.ReportMetric and prints a Markdown table on stdout (so
// `make bench` shows it without -v). Nothing asserts on time.
//
//	go test -run '^$' -bench . -benchtime 1x ./e2e/

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/netbench"
	"github.com/tether-dev/tether/internal/netlab"
)

// Ports of the benchmark servers. The pod's iperf3 server listens on the pod
// IP; the direct ones listen in the mgr namespace on MgrIP.
const (
	portIperfPod    = 5201
	portIperfDirect = 5202
	portFirstDirect = 9104
	portHoldProcess = 9103 // the pod's hold server in a process of its own
)

// holdServerEnv, set to an address, turns the test binary into a hold server
// on that address (see startHoldProcess) instead of running tests.
const holdServerEnv = "TETHER_E2E_HOLD_SERVER"

func init() {
	netbench.ConnectLoopChild()
	addr := os.Getenv(holdServerEnv)
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stop := serveHold(ln)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	stop()
	os.Exit(0)
}

// startHoldProcess runs a hold server (serveHold) on the pod's
// portHoldProcess in a child process. Ten thousand connections need 10,000
// descriptors at each end; in one process with the clients they would need
// 20,000, more than a host's hard RLIMIT_NOFILE often allows (and only
// CAP_SYS_RESOURCE may raise it).
func (e *env) startHoldProcess() string {
	exe, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	addr := e.podAddr(portHoldProcess)
	if _, err := e.lab.Start(e.lab.Pod, filepath.Join(e.dir, "hold.log"), "env", holdServerEnv+"="+addr, exe); err != nil {
		e.t.Fatal(err)
	}
	e.waitTCP(e.lab.Pod, addr)
	return addr
}

// directAddr is MgrIP:port: a server in the mgr namespace, reached over the
// veth from the client namespace.
func (e *env) directAddr(port int) string {
	return netip.AddrPortFrom(e.lab.MgrIP, uint16(port)).String()
}

// BenchmarkTCPBulk: iperf3 for 5 s, 1 and 4 streams, upload (client sends)
// and download (-R), through the VIF to the pod and direct to the mgr
// namespace. Through the VIF, 1- and 4-stream runs alternate, three times per
// direction: the machine's speed drifts over minutes, and back-to-back
// batches of one and then the other let the drift decide which is faster.
// CPU per GB (the daemon's and the manager's CPU time over the bytes
// received) varies less with the machine's load than the rates do.
//
// With TETHER_BENCH_PROFILE=DIR, each VIF run also saves a 4 s CPU profile
// of the daemon and the manager there (see profileDirEnv).
func BenchmarkTCPBulk(b *testing.B) {
	requireLab(b)
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	e := newEnv(b, envOptions{})
	dpid, mpid := procPID(b, e.daemon), procPID(b, e.mgr)
	pod := e.startIperf(e.lab.Pod, e.lab.PodIP, portIperfPod)
	direct := e.startIperf(e.lab.Mgr, e.lab.MgrIP, portIperfDirect)

	const rounds = 3 // alternating VIF pairs per direction and iteration
	streams := [2]int{1, 4}
	tab := &netbench.Table{Title: fmt.Sprintf("BenchmarkTCPBulk: iperf3 -t 5, Gbit/s received (%d CPUs); VIF 1- and 4-stream runs alternate", runtime.NumCPU())}
	// CPU-s per GB of each direction's 1-stream runs, for the ratio of
	// download to upload.
	var perGB1 [2][2]float64 // [upload, download][daemon, manager]
	for d, dir := range []struct {
		name    string
		reverse bool
	}{{"upload", false}, {"download", true}} {
		b.Run(dir.name, func(b *testing.B) {
			// Per stream count: VIF and direct Gbit/s summed over runs,
			// each VIF run's rate, and the daemon's and manager's CPU
			// while iperf3 runs through them.
			var vif, dir2, dCPU, mCPU, dSecs, mSecs, gb [2]float64
			var rates [2][]float64
			for range b.N {
				for r := range rounds {
					for i, n := range streams {
						var res iperfResult
						run := func() { res = e.iperf(b, pod, n, dir.reverse) }
						name := fmt.Sprintf("%s-%d-r%d", dir.name, n, r)
						cpu := netbench.CPUDuring(b, func() { e.profileDuring(b, name, run) }, dpid, mpid)
						vif[i] += res.gbps
						rates[i] = append(rates[i], res.gbps)
						gb[i] += res.bytes / 1e9
						dCPU[i] += cpu[0].Pct
						mCPU[i] += cpu[1].Pct
						dSecs[i] += cpu[0].Secs
						mSecs[i] += cpu[1].Secs
					}
				}
				for i, n := range streams {
					dir2[i] += e.iperf(b, direct, n, dir.reverse).gbps
				}
			}
			b.ReportMetric(0, "ns/op") // the run's duration says nothing here
			for i, n := range streams {
				runs := float64(b.N * rounds)
				v, d := vif[i]/runs, dir2[i]/float64(b.N)
				name := fmt.Sprintf("%s/%d-stream", dir.name, n)
				b.ReportMetric(v, fmt.Sprintf("vif-%d-Gbit/s", n))
				b.ReportMetric(d, fmt.Sprintf("direct-%d-Gbit/s", n))
				b.ReportMetric(v/d, fmt.Sprintf("ratio-%d", n))
				b.ReportMetric(dCPU[i]/runs, fmt.Sprintf("daemon-CPU%%-%d", n))
				b.ReportMetric(mCPU[i]/runs, fmt.Sprintf("mgr-CPU%%-%d", n))
				b.ReportMetric(dSecs[i]/gb[i], fmt.Sprintf("daemon-CPU-s/GB-%d", n))
				b.ReportMetric(mSecs[i]/gb[i], fmt.Sprintf("mgr-CPU-s/GB-%d", n))
				tab.Add(name+" (Gbit/s)", v, d)
				tab.AddVIF(name+": each VIF run, min–max (Gbit/s)", slices.Min(rates[i]), slices.Max(rates[i]))
				tab.AddVIF(name+": daemon, manager CPU % of one core", dCPU[i]/runs, mCPU[i]/runs)
				tab.AddVIF(name+": daemon, manager CPU-s per GB", dSecs[i]/gb[i], mSecs[i]/gb[i])
			}
			perGB1[d] = [2]float64{dSecs[0] / gb[0], mSecs[0] / gb[0]}
			four := vif[1] / vif[0]
			b.ReportMetric(four, "4-vs-1-stream")
			tab.AddVIF(dir.name+": 4 streams / 1 stream through the VIF", four)
		})
	}
	if perGB1[0][0] > 0 && perGB1[1][0] > 0 {
		tab.AddVIF("1 stream, CPU-s per GB download / upload: daemon, manager",
			perGB1[1][0]/perGB1[0][0], perGB1[1][1]/perGB1[0][1])
	}
	tab.Print()
}

// profileDirEnv names a directory: when set, the lab's daemon and manager
// serve Go's profiler (on pprofDaemon and pprofMgr, loopback of their
// namespaces) and BenchmarkTCPBulk saves DIR/daemon-NAME.pb.gz and
// DIR/manager-NAME.pb.gz for each run through the VIF, for
//
//	go tool pprof -top -diff_base DIR/daemon-upload-1-r0.pb.gz DIR/daemon-download-1-r0.pb.gz
const profileDirEnv = "TETHER_BENCH_PROFILE"

const (
	pprofDaemon = "127.0.0.1:6060"
	pprofMgr    = "127.0.0.1:6061"
)

// profileArgs are the global flags that make a process serve the profiler
// on addr when profileDirEnv is set.
func profileArgs(addr string) []string {
	if os.Getenv(profileDirEnv) == "" {
		return nil
	}
	return []string{"--pprof", addr}
}

// profileDuring runs fn and, when profileDirEnv is set, takes 4 s CPU
// profiles of the daemon and the manager meanwhile (fn runs iperf3 for 5,
// or BenchmarkConnect's 5,000 connections).
func (e *env) profileDuring(b *testing.B, name string, fn func()) {
	b.Helper()
	dir := os.Getenv(profileDirEnv)
	if dir == "" {
		fn()
		return
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []struct{ who, ns, addr string }{
		{"daemon", e.lab.Client, pprofDaemon}, {"manager", e.lab.Mgr, pprofMgr},
	} {
		wg.Go(func() {
			errs[i] = e.saveProfile(p.ns, p.addr, filepath.Join(dir, p.who+"-"+name+".pb.gz"))
		})
	}
	fn()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
}

// saveProfile fetches a 4 s CPU profile from the profiler at addr in
// namespace ns into path.
func (e *env) saveProfile(ns, addr, path string) error {
	client := http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return e.lab.DialContext(ctx, ns, network, a)
		}},
	}
	resp, err := client.Get("http://" + addr + "/debug/pprof/profile?seconds=4")
	if err != nil {
		return fmt.Errorf("CPU profile from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("CPU profile from %s: %s", addr, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

// startIperf starts `iperf3 -s` bound to ip:port in namespace ns and waits
// until it accepts (from its own namespace, so no tunnel is opened).
func (e *env) startIperf(ns string, ip netip.Addr, port int) netip.AddrPort {
	addr := netip.AddrPortFrom(ip, uint16(port))
	log := filepath.Join(e.dir, fmt.Sprintf("iperf3-%d.log", port))
	if _, err := e.lab.Start(ns, log, "iperf3", "-s", "-B", ip.String(), "-p", strconv.Itoa(port)); err != nil {
		e.t.Fatal(err)
	}
	e.waitTCP(ns, addr.String())
	return addr
}

// iperfResult is what the receiver of one iperf3 run counted.
type iperfResult struct {
	gbps  float64
	bytes float64
}

// iperf runs one iperf3 client from the client namespace and returns what
// the receiver counted.
func (e *env) iperf(b *testing.B, server netip.AddrPort, streams int, reverse bool) iperfResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"-c", server.Addr().String(), "-p", strconv.Itoa(int(server.Port())),
		"-t", "5", "-J", "-P", strconv.Itoa(streams)}
	if reverse {
		args = append(args, "-R")
	}
	// stdout only: iperf3 may warn on stderr, which would spoil the JSON.
	out, err := e.lab.Command(ctx, e.lab.Client, "iperf3", args...).Output()
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				Bytes         float64 `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil || r.Error != "" || err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		b.Fatalf("iperf3 %s: %v; JSON %v; iperf3 error %q", strings.Join(args, " "), err, jerr, r.Error)
	}
	return iperfResult{gbps: r.End.SumReceived.BitsPerSecond / 1e9, bytes: r.End.SumReceived.Bytes}
}

// BenchmarkConnect: 5,000 sequential short connections, each dial + read of
// the byte the server writes on accept + close, through the VIF to the pod
// and direct to the mgr namespace.
func BenchmarkConnect(b *testing.B) {
	const (
		n      = 5000
		warmup = 100
	)
	e := newEnv(b, envOptions{})
	ln, err := e.lab.Listen(e.lab.Mgr, "tcp", e.directAddr(portFirstDirect))
	if err != nil {
		b.Fatal(err)
	}
	e.stops = append(e.stops, serveFirstByte(ln))

	var vif, dir netbench.ConnectStats
	for range b.N {
		for _, w := range []struct {
			addr string
			into *netbench.ConnectStats
		}{{e.podAddr(portFirst), &vif}, {e.directAddr(portFirstDirect), &dir}} {
			if _, err := netbench.ConnectLoop(e.lab, e.lab.Client, w.addr, warmup); err != nil {
				b.Fatalf("warm-up: %v", err)
			}
			var s netbench.ConnectStats
			var err error
			run := func() { s, err = netbench.ConnectLoop(e.lab, e.lab.Client, w.addr, n) }
			if w.into == &vif {
				e.profileDuring(b, "connect", run)
			} else {
				run()
			}
			if err != nil {
				b.Fatal(err)
			}
			*w.into = s // the last run's: percentiles do not average
		}
	}
	b.ReportMetric(0, "ns/op")
	tab := &netbench.Table{Title: fmt.Sprintf("BenchmarkConnect: %d sequential connections, dial + first byte + close", n)}
	netbench.ReportConnect(b, tab, vif, dir, "direct")
	tab.Print()
}

// BenchmarkIdleMemory: the daemon's (and, for information, the manager's)
// resident memory per idle TCP connection, with 10,000 connections open
// through the VIF to the pod's hold server.
//
// There is no direct counterpart: without the VIF no user-space process holds
// anything per connection, so the table leaves the direct column empty.
func BenchmarkIdleMemory(b *testing.B) {
	const (
		n       = 10000
		dialers = 200
	)
	requireLab(b)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < n+1000 {
		// TestMain tries to raise it, which needs CAP_SYS_RESOURCE.
		b.Skipf("RLIMIT_NOFILE is %d, too few for %d connections", lim.Cur, n)
	}
	// limits.tcpFlowsPerSession (4096 by default) would refuse the rest.
	e := newEnv(b, envOptions{mgrArgs: []string{"--tcp-flows-per-session", strconv.Itoa(n + dialers)}})
	dpid, mpid := procPID(b, e.daemon), procPID(b, e.mgr)
	hold := e.startHoldProcess()

	var dKiB, mKiB, openSecs float64
	var dBefore, dAfter, mBefore, mAfter procMem
	for range b.N {
		dBefore, mBefore = settledMem(b, dpid), settledMem(b, mpid)
		start := time.Now()
		conns, failed, err := openConns(e.lab, hold, n, dialers)
		openSecs = time.Since(start).Seconds()
		if failed > 0 {
			// Measure what did open, then fail: failures at this scale are a finding.
			b.Errorf("%d of %d connections failed; first error: %v", failed, n, err)
		}
		if len(conns) == 0 {
			b.FailNow()
		}
		if err := e.waitLive(len(conns), time.Minute); err != nil {
			closeAll(conns)
			b.Fatal(err)
		}
		dAfter, mAfter = settledMem(b, dpid), settledMem(b, mpid)
		dKiB = float64(dAfter.rssKiB-dBefore.rssKiB) / float64(len(conns))
		mKiB = float64(mAfter.rssKiB-mBefore.rssKiB) / float64(len(conns))
		closeAll(conns)
		// Let the flows end before the next iteration's baseline.
		if err := e.waitLive(0, time.Minute); err != nil {
			b.Errorf("after closing the connections: %v", err)
		}
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(dKiB, "daemon-KiB/conn")
	b.ReportMetric(mKiB, "mgr-KiB/conn")
	b.ReportMetric(float64(dAfter.rssKiB)/1024, "daemon-MiB")
	b.ReportMetric(float64(mAfter.rssKiB)/1024, "mgr-MiB")
	b.ReportMetric(float64(n)/openSecs, "open-conns/s")

	tab := &netbench.Table{Title: fmt.Sprintf("BenchmarkIdleMemory: %d idle connections through the VIF (no direct counterpart)", n)}
	tab.AddVIF("daemon RSS before (MiB)", float64(dBefore.rssKiB)/1024)
	tab.AddVIF("daemon RSS with the connections (MiB)", float64(dAfter.rssKiB)/1024)
	tab.AddVIF("daemon KiB per connection", dKiB)
	tab.AddVIF("daemon threads with the connections", float64(dAfter.threads))
	tab.AddVIF("manager RSS before (MiB)", float64(mBefore.rssKiB)/1024)
	tab.AddVIF("manager RSS with the connections (MiB)", float64(mAfter.rssKiB)/1024)
	tab.AddVIF("manager KiB per connection", mKiB)
	tab.AddVIF(fmt.Sprintf("opening them, %d dialers (conns/s)", dialers), float64(n)/openSecs)
	tab.Print()
}

// BenchmarkIdleCPU: CPU and wake-ups of the daemon and the manager over 10 s,
// connected with no connections and then with 100 idle connections. Context
// switches (voluntary + involuntary, summed over threads) stand in for
// wake-ups. No direct counterpart: see BenchmarkIdleMemory.
func BenchmarkIdleCPU(b *testing.B) {
	const (
		n      = 100
		window = 10 * time.Second
	)
	e := newEnv(b, envOptions{})
	dpid, mpid := procPID(b, e.daemon), procPID(b, e.mgr)

	idleFor := func() { time.Sleep(window) }
	var base, idle []netbench.CPURate // daemon, manager
	for range b.N {
		time.Sleep(3 * time.Second) // let connect's work settle
		base = netbench.CPUDuring(b, idleFor, dpid, mpid)
		conns, failed, err := openConns(e.lab, e.podAddr(portHold), n, 20)
		if failed > 0 {
			closeAll(conns)
			b.Fatalf("%d of %d connections failed; first error: %v", failed, n, err)
		}
		if err := e.waitLive(n, time.Minute); err != nil {
			closeAll(conns)
			b.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		idle = netbench.CPUDuring(b, idleFor, dpid, mpid)
		closeAll(conns)
		if err := e.waitLive(0, time.Minute); err != nil {
			b.Errorf("after closing the connections: %v", err)
		}
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(idle[0].Pct, "daemon-CPU%")
	b.ReportMetric(idle[0].Wakeups, "daemon-wakeups/s")
	b.ReportMetric(idle[1].Pct, "mgr-CPU%")
	b.ReportMetric(idle[1].Wakeups, "mgr-wakeups/s")
	b.ReportMetric(base[0].Wakeups, "daemon-0conn-wakeups/s")
	b.ReportMetric(base[1].Wakeups, "mgr-0conn-wakeups/s")

	tab := &netbench.Table{Title: fmt.Sprintf("BenchmarkIdleCPU: %v per sample, connected (no direct counterpart)", window)}
	for i, who := range []string{"daemon", "manager"} {
		tab.AddVIF(who+" CPU %, no connections", base[i].Pct)
		tab.AddVIF(fmt.Sprintf("%s CPU %%, %d idle connections", who, n), idle[i].Pct)
		tab.AddVIF(who+" wake-ups/s, no connections", base[i].Wakeups)
		tab.AddVIF(fmt.Sprintf("%s wake-ups/s, %d idle connections", who, n), idle[i].Wakeups)
	}
	tab.Print()
}

// openConns opens n connections to addr from the client namespace with the
// given number of concurrent dialers, each inside its own Lab.Do (a
// socket is made in the namespace of the thread that calls socket(2)), each dial bounded by 10 s and the whole by 3 minutes. It
// returns the connections that opened, how many failed and the first error.
func openConns(lab *netlab.Lab, addr string, n, dialers int) (conns []net.Conn, failed int, firstErr error) {
	var (
		mu   sync.Mutex // guards conns, failed, firstErr
		wg   sync.WaitGroup
		jobs = make(chan struct{}, n)
	)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	note := func(c net.Conn, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			return
		}
		conns = append(conns, c)
	}
	for range min(dialers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := lab.Do(lab.Client, func() error {
				d := net.Dialer{Timeout: 10 * time.Second}
				for range jobs {
					note(d.DialContext(ctx, "tcp", addr))
				}
				return nil
			})
			if err != nil {
				note(nil, err)
			}
		}()
	}
	wg.Wait()
	return conns, failed, firstErr
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// waitLive waits up to timeout for the daemon's counters.tcp_tunnels_live to
// reach want.
func (e *env) waitLive(want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		counters, _ := e.status()["counters"].(map[string]any)
		live, _ := counters["tcp_tunnels_live"].(float64)
		if int(live) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tcp_tunnels_live = %v after %v, want %d", live, timeout, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// procPID is the pid of the program p runs. Lab.Start runs `ip netns exec NS
// prog`, and ip execs prog in place (it forks only in batch mode), so the
// pid of p.Cmd is the program's; this checks that rather than trusting it.
func procPID(b *testing.B, p *netlab.Proc) int {
	b.Helper()
	pid := p.Cmd.Process.Pid
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		b.Fatal(err)
	}
	if filepath.Base(exe) != filepath.Base(tetherBin) {
		b.Fatalf("pid %d runs %s, not %s: ip netns exec did not exec in place", pid, exe, tetherBin)
	}
	return pid
}

// procMem is a reading of /proc/PID/status.
type procMem struct {
	rssKiB  int64
	threads int64
}

func readMem(pid int) (procMem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMem{}, err
	}
	defer f.Close()
	var m procMem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		switch k {
		case "VmRSS": // "  1234 kB"
			m.rssKiB, _ = strconv.ParseInt(fields[0], 10, 64)
		case "Threads":
			m.threads, _ = strconv.ParseInt(fields[0], 10, 64)
		}
	}
	if m.rssKiB == 0 {
		return m, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, sc.Err()
}

// settledMem reads the memory twice, a second apart, and keeps the later
// reading: whatever a GC cycle or the scavenger was doing at the first has
// had time to finish.
func settledMem(b *testing.B, pid int) procMem {
	b.Helper()
	if _, err := readMem(pid); err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second)
	m, err := readMem(pid)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// Package netbench holds the measuring helpers the benchmarks of the
// namespace lab (e2e) and of the test cluster (kube/e2e) share: the
// connection-latency loop, its statistics, and the Markdown table that puts
// a figure through the VIF beside the same figure without it.
package netbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/netlab"
)

// ConnectStats are the latencies of one connect loop (sorted once
// ConnectLoop has them), also what its child prints as JSON.
type ConnectStats struct {
	Elapsed time.Duration
	Lat     []time.Duration
}

// Rate is connections per second.
func (s ConnectStats) Rate() float64 { return float64(len(s.Lat)) / s.Elapsed.Seconds() }

// Percentile is the nearest-rank q-quantile of sorted latencies.
func (s ConnectStats) Percentile(q float64) time.Duration {
	if len(s.Lat) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(s.Lat)))) - 1
	return s.Lat[max(i, 0)]
}

// ConnectLoop makes n sequential connections to addr (RunConnectLoop) from
// namespace ns, in a child process: the test binary again, which must call
// ConnectLoopChild from its init. In the test process the loop would share
// the scheduler with the servers there, and a goroutine on a thread locked
// into a namespace (netlab.Lab.Do) is woken by a thread hand-off on every
// read, both of which add to every connection, through the VIF or not.
func ConnectLoop(lab *netlab.Lab, ns, addr string, n int) (ConnectStats, error) {
	exe, err := os.Executable()
	if err != nil {
		return ConnectStats{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := lab.Run(ctx, ns, "env", fmt.Sprintf("%s=%s %d", ConnectLoopEnv, addr, n), exe)
	if err != nil {
		return ConnectStats{}, err
	}
	var s ConnectStats
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return ConnectStats{}, fmt.Errorf("connect loop to %s: %v: %q", addr, err, out)
	}
	slices.Sort(s.Lat)
	return s, nil
}

// ConnectLoopEnv, set to "ADDR N", turns a test binary that calls
// ConnectLoopChild from its init into ConnectLoop's client.
const ConnectLoopEnv = "TETHER_E2E_CONNECT_LOOP"

// ConnectLoopChild does nothing unless ConnectLoopEnv is set; then it runs
// RunConnectLoop, prints the ConnectStats as JSON on stdout and exits.
func ConnectLoopChild() {
	spec := os.Getenv(ConnectLoopEnv)
	if spec == "" {
		return
	}
	var addr string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %d", &addr, &n); err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", ConnectLoopEnv, spec, err)
		os.Exit(2)
	}
	r, err := RunConnectLoop(addr, n)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(r)
	os.Exit(0)
}

// RunConnectLoop makes n sequential connections to addr, each dial + read
// of the byte the server writes on accept + close, bounded by 5 s each and
// 2 minutes in all. The client closes first, gracefully, so its TIME_WAIT
// sockets stay in the client's kernel (never in the daemon's netstack,
// which closes passively). No SO_LINGER 0: 5,000 TIME_WAIT sockets per
// destination fit easily in the ~28,000 ephemeral ports, and the labs set
// tcp_tw_reuse besides.
func RunConnectLoop(addr string, n int) (ConnectStats, error) {
	r := ConnectStats{Lat: make([]time.Duration, 0, n)}
	deadline := time.Now().Add(2 * time.Minute)
	buf := make([]byte, 1)
	d := net.Dialer{Timeout: 5 * time.Second}
	start := time.Now()
	for i := range n {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("connect loop to %s: only %d of %d connections within 2m", addr, i, n)
		}
		t0 := time.Now()
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return r, fmt.Errorf("connection %d to %s: %w", i, addr, err)
		}
		c.SetReadDeadline(t0.Add(5 * time.Second))
		_, err = io.ReadFull(c, buf)
		lat := time.Since(t0)
		c.Close()
		if err != nil {
			return r, fmt.Errorf("connection %d to %s: first byte: %w", i, addr, err)
		}
		r.Lat = append(r.Lat, lat)
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// ReportConnect reports two connect loops' rates and p50/p99 latencies
// through the VIF and the other way (direct names it in the metrics:
// "direct-conns/s"), their ratios and the latency the VIF adds, as metrics
// of b and rows of tab.
func ReportConnect(b *testing.B, tab *Table, vif, other ConnectStats, direct string) {
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(vif.Rate(), "vif-conns/s")
	b.ReportMetric(other.Rate(), direct+"-conns/s")
	b.ReportMetric(vif.Rate()/other.Rate(), "conns/s-ratio")
	tab.Add("connections/s", vif.Rate(), other.Rate())
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", 0.50}, {"p99", 0.99}} {
		v, d := us(vif.Percentile(p.q)), us(other.Percentile(p.q))
		b.ReportMetric(v, "vif-"+p.name+"-us")
		b.ReportMetric(d, direct+"-"+p.name+"-us")
		b.ReportMetric(v-d, "added-"+p.name+"-us")
		b.ReportMetric(v/d, p.name+"-ratio")
		tab.Add(p.name+" connect + first byte (µs)", v, d)
		tab.AddVIF(p.name+" added by the VIF (µs)", v-d)
	}
}

// Table is a benchmark's summary, printed as Markdown on stdout at the end
// of the benchmark (b.Logf shows only with -v). Safe for sub-benchmarks,
// which run one at a time.
type Table struct {
	Title string
	rows  [][4]string
}

// Add records a measurement made both ways; ratio is via VIF / direct.
func (t *Table) Add(name string, vif, direct float64) {
	t.rows = append(t.rows, [4]string{name, FmtNum(vif), FmtNum(direct), strconv.FormatFloat(vif/direct, 'f', 3, 64)})
}

// AddVIF records a measurement with no direct counterpart: one value, or
// several shown as "a, b".
func (t *Table) AddVIF(name string, vif ...float64) {
	vals := make([]string, len(vif))
	for i, v := range vif {
		vals[i] = FmtNum(v)
	}
	t.rows = append(t.rows, [4]string{name, strings.Join(vals, ", "), "—", "—"})
}

// Print writes the table on stdout.
func (t *Table) Print() {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%s\n\n| measurement | via VIF | direct | ratio |\n|---|---:|---:|---:|\n", t.Title)
	for _, r := range t.rows {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", r[0], r[1], r[2], r[3])
	}
	fmt.Print(sb.String() + "\n")
}

// FmtNum prints three significant digits or the whole integer part.
func FmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

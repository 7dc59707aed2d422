package agent

// Benchmarks of the agent's HTTP routing overhead, all on loopback:
// keep-alive HTTP/1.1 GETs of a small fixed body from one http.Client, each
// answer read whole and checked (so a request routed to the wrong place
// fails the benchmark). Nothing asserts on time.
//
//	BenchmarkHTTPDirect               client → app
//	BenchmarkHTTPViaAgentNoIntercept  client → agent, spliced per connection → app
//	BenchmarkHTTPViaAgentFiltered     client → agent, net/http per request → app
//	                                  (an HTTP intercept exists; its filter does not match)
//	BenchmarkHTTPViaAgentIntercepted  client → agent, net/http per request → AgentTunnel
//	                                  (the fake manager's relay) → developer
//
// Each agent benchmark also times b.N requests straight to the same app,
// in chunks interleaved with its own (timer stopped), so its ratio-vs-direct
// compares two measurements taken under the same load on the machine:
// req/s is the agent's, direct-req/s the app's straight, added-µs/req what
// the agent adds to each request.
//
//	go test -run '^$' -bench . -benchtime 2s ./agent/

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// benchConns is how many requests are in flight at once, each on its
	// own keep-alive connection: one, so that the numbers are per-request
	// latency rather than a contest for the machine's cores between the
	// client, the agent and the app.
	benchConns = 1
	// benchPath and an x-user header (alice or carol) are what every
	// request carries; the intercept's filter (benchFilter) wants the
	// path and x-user: alice.
	benchPath    = "/api/items"
	benchAlice   = "alice"
	benchCarol   = "carol"
	benchFilter  = "/api/.*"
	benchChunks  = 16 // interleaved direct and agent chunks per run
	benchTimeout = 10 * time.Second
)

func BenchmarkHTTPDirect(b *testing.B) {
	app := benchServer(b, "app")
	l := newBenchLoad(b, benchCarol)
	l.warm(b, "http://"+app, "app")
	b.ReportAllocs()
	b.ResetTimer()
	if err := l.run("http://"+app, "app", b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	l.checkDials(b, 1)
}

func BenchmarkHTTPViaAgentNoIntercept(b *testing.B) {
	app := benchServer(b, "app")
	a := newBenchAgent(b, app)
	a.setRoutes() // the watch is up; nothing to intercept
	benchVsDirect(b, app, a.url, benchCarol, "app")
}

func BenchmarkHTTPViaAgentFiltered(b *testing.B) {
	app := benchServer(b, "app")
	a := newBenchAgent(b, app)
	a.m.setDev("x", benchServer(b, "dev"))
	a.setRoutes(httpIntercept("x", map[string]string{"x-user": benchAlice}, benchFilter))
	benchVsDirect(b, app, a.url, benchCarol, "app")
	if n := a.m.opened("x"); n != 0 {
		b.Errorf("%d flows opened for an intercept no request matches", n)
	}
}

func BenchmarkHTTPViaAgentIntercepted(b *testing.B) {
	app := benchServer(b, "app")
	a := newBenchAgent(b, app)
	a.m.setDev("x", benchServer(b, "dev"))
	a.setRoutes(httpIntercept("x", map[string]string{"x-user": benchAlice}, benchFilter))
	// The direct baseline is the app; the developer's server is the same
	// code on the same machine.
	benchVsDirect(b, app, a.url, benchAlice, "dev")
	// One request at a time: one flow, kept alive. (With more in flight,
	// net/http's transport may dial a spare while a connection frees up.)
	if n := a.m.opened("x"); benchConns == 1 && n != 1 {
		b.Errorf("%d flows opened for one keep-alive connection, want 1", n)
	}
}

// benchVsDirect times b.N requests through the agent at via, answered by
// the server named name, and, interleaved with them timer stopped, b.N
// requests straight to the app at address app.
func benchVsDirect(b *testing.B, app, via, user, name string) {
	direct := "http://" + app
	l := newBenchLoad(b, user)
	l.warm(b, direct, "app")
	l.warm(b, via, name)
	var directTime time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	chunks := min(b.N, benchChunks)
	for i := range chunks {
		n := b.N/chunks + btoi(i < b.N%chunks)
		b.StopTimer()
		start := time.Now()
		if err := l.run(direct, "app", n); err != nil {
			b.Fatal("direct:", err)
		}
		directTime += time.Since(start)
		b.StartTimer()
		if err := l.run(via, name, n); err != nil {
			b.Fatal("via the agent:", err)
		}
	}
	b.StopTimer()
	viaTime := b.Elapsed()
	b.ReportMetric(float64(b.N)/viaTime.Seconds(), "req/s")
	b.ReportMetric(float64(b.N)/directTime.Seconds(), "direct-req/s")
	b.ReportMetric(directTime.Seconds()/viaTime.Seconds(), "ratio-vs-direct")
	b.ReportMetric(float64(viaTime-directTime)/float64(b.N)/1e3, "added-µs/req")
	l.checkDials(b, 2) // app and agent: every request on a kept-alive connection
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// benchServer is an app or developer server answering every request with
// the same small body, which names it (see benchBody); it returns its
// address.
func benchServer(b *testing.B, name string) string {
	body := []byte(benchBody(name))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}))
	b.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// benchBody is the answer of the server named name: 64 bytes.
func benchBody(name string) string {
	s := name + " says hello "
	return s + strings.Repeat(".", 63-len(s)) + "\n"
}

// newBenchAgent is the tests' harness without its debug log, which would
// dominate a benchmark.
func newBenchAgent(b *testing.B, app string) *harness {
	return newHarness(b, app, func(c *Config) { c.Log = discardLogger() })
}

// benchLoad sends the benchmarks' requests: GET benchPath with an x-user
// header, over benchConns keep-alive HTTP/1.1 connections per server.
type benchLoad struct {
	c     *http.Client
	user  string
	dials atomic.Int64
}

func newBenchLoad(b *testing.B, user string) *benchLoad {
	l := &benchLoad{user: user}
	d := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			l.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		MaxConnsPerHost:     benchConns,
		MaxIdleConnsPerHost: benchConns,
		DisableCompression:  true,
	}
	l.c = &http.Client{Transport: tr, Timeout: benchTimeout}
	b.Cleanup(tr.CloseIdleConnections)
	return l
}

// warm opens the connections to url and, through the agent, the agent's
// own to the app or developer.
func (l *benchLoad) warm(b *testing.B, url, name string) {
	if err := l.run(url, name, 10*benchConns); err != nil {
		b.Fatal("warm-up:", err)
	}
}

// run sends n requests to url, benchConns at a time, and checks that the
// server named name answered each.
func (l *benchLoad) run(url, name string, n int) error {
	want := []byte(benchBody(name))
	var left atomic.Int64
	left.Store(int64(n))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex // guards firstErr
		firstErr error
	)
	for range min(n, benchConns) {
		wg.Go(func() {
			if err := l.send(url, want, &left); err != nil {
				mu.Lock()
				defer mu.Unlock()
				if firstErr == nil {
					firstErr = err
				}
				left.Store(0)
			}
		})
	}
	wg.Wait()
	return firstErr
}

// send sends requests to url until left runs out.
func (l *benchLoad) send(url string, want []byte, left *atomic.Int64) error {
	req, err := http.NewRequest("GET", url+benchPath, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-User", l.user)
	var body bytes.Buffer
	for left.Add(-1) >= 0 {
		resp, err := l.c.Do(req)
		if err != nil {
			return err
		}
		body.Reset()
		_, err = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("GET %s: read body: %w", req.URL, err)
		}
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body.Bytes(), want) {
			return fmt.Errorf("GET %s: %s %q, want 200 %q", req.URL, resp.Status, body.Bytes(), want)
		}
	}
	return nil
}

// checkDials fails b if the client opened more connections than benchConns
// to each of servers servers: the benchmark would time dials.
func (l *benchLoad) checkDials(b *testing.B, servers int) {
	if n := l.dials.Load(); n > int64(servers*benchConns) {
		b.Errorf("the client opened %d connections to %d servers, want at most %d each", n, servers, benchConns)
	}
}

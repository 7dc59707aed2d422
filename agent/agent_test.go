package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "github.com/tether-dev/tether/rpc/manager"
)

func TestNoIntercepts(t *testing.T) {
	app := httpServer(t, "app")
	h := newHarness(t, app)
	c := newClient(t, false)
	if got := c.do(t, "GET", h.url+"/", ""); !strings.HasPrefix(got, "app ") {
		t.Errorf("got %q, want the app", got)
	}
	h.setRoutes()
	if got := c.do(t, "POST", h.url+"/x", "data"); got != "app proto=1 host=web.example body=data" {
		t.Errorf("got %q, want the app with the request as sent", got)
	}
}

// TestServerFirst: without intercepts nothing waits for the client's first
// bytes; with HTTP ones a silent client reaches the app after the peek.
func TestServerFirst(t *testing.T) {
	greeter := tcpServer(t, func(c net.Conn) {
		io.WriteString(c, "220 hello\r\n")
		io.Copy(io.Discard, c)
	})
	h := newHarness(t, greeter, func(c *Config) { c.PeekTimeout = 3 * time.Second })
	greet := func() time.Duration {
		start := time.Now()
		c, err := net.Dial("tcp", h.a.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "220 hello\r\n" {
			t.Fatalf("got %q, %v; want the greeting", line, err)
		}
		return time.Since(start)
	}
	if d := greet(); d > time.Second {
		t.Errorf("greeting took %s without intercepts: something waited for the client", d)
	}
	h.setRoutes(httpIntercept("x", map[string]string{"x-user": "alice"}, ""))
	if d := greet(); d < 3*time.Second {
		t.Errorf("greeting took %s with an HTTP intercept, want the peek's 3s", d)
	}
}

// TestHTTPPerRequest: an HTTP intercept takes the requests its filter
// matches and the app the others, request by request on one keep-alive
// connection, in HTTP/1.1 and in h2c.
func TestHTTPPerRequest(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "h2c"}[h2c], func(t *testing.T) {
			app, dev := httpServer(t, "app"), httpServer(t, "dev")
			h := newHarness(t, app)
			h.m.setDev("x", dev)
			h.setRoutes(httpIntercept("x", map[string]string{"x-user": "alice|carol"}, "/api/.*"))
			c := newClient(t, h2c)
			proto := map[bool]int{false: 1, true: 2}[h2c]
			steps := []struct {
				method, path, body string
				header             []string
				want               string
			}{
				{"GET", "/api/a", "", []string{"X-User=alice"}, "dev"},
				{"GET", "/api/a", "", []string{"X-User=bob"}, "app"},
				{"GET", "/api/a", "", nil, "app"},
				{"GET", "/other", "", []string{"x-user=alice"}, "app"},               // path does not match
				{"GET", "/api/a", "", []string{"x-user=xalice"}, "app"},              // anchored
				{"GET", "/api/b", "", []string{"x-user=carol", "x-user=bob"}, "app"}, // "carol, bob"
				{"POST", "/api/c", "payload", []string{"x-user=carol"}, "dev"},
				{"POST", "/api/c", "payload", []string{"x-user=dave"}, "app"},
			}
			for i, s := range steps {
				got := c.do(t, s.method, h.url+s.path, s.body, s.header...)
				want := fmt.Sprintf("%s proto=%d host=web.example body=%s", s.want, proto, s.body)
				if got != want {
					t.Errorf("step %d %s %s %v: got %q, want %q", i, s.method, s.path, s.header, got, want)
				}
			}
			// The intercept goes: the same connection's next request is
			// the app's.
			h.setRoutes()
			if got := c.do(t, "GET", h.url+"/api/a", "", "x-user=alice"); !strings.HasPrefix(got, "app ") {
				t.Errorf("after the intercept went: got %q, want the app", got)
			}
			if n := c.connections(); n != 1 {
				t.Errorf("the client opened %d connections, want 1", n)
			}
		})
	}
}

// TestH2CUpgrade: an HTTP/1.1 Upgrade to h2c is declined, so the connection
// stays HTTP/1.1 and keeps being routed per request.
func TestH2CUpgrade(t *testing.T) {
	app, dev := httpServer(t, "app"), httpServer(t, "dev")
	h := newHarness(t, app)
	h.m.setDev("x", dev)
	h.setRoutes(httpIntercept("x", map[string]string{"x-user": "alice"}, ""))
	c, err := net.Dial("tcp", h.a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, s := range []struct{ user, want string }{{"bob", "app"}, {"alice", "dev"}, {"bob", "app"}} {
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: web.example\r\nX-User: %s\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
			"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", s.user)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 || !strings.HasPrefix(string(b), s.want+" ") {
			t.Errorf("x-user %s: %s %s %q, want 200 HTTP/1.1 from %s", s.user, resp.Proto, resp.Status, b, s.want)
		}
	}
}

// TestWholeTraffic: a GLOBAL intercept of the port, or a REPLACE one of any
// port, gets every connection, HTTP or not; a GLOBAL one of another port
// gets nothing.
func TestWholeTraffic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		route *pb.InterceptInfo
		want  string
	}{
		{"global", wholeIntercept("g", pb.InterceptKind_GLOBAL, testPort), "dev"},
		{"replace other port", wholeIntercept("r", pb.InterceptKind_REPLACE, 9999), "dev"},
		{"global other port", wholeIntercept("o", pb.InterceptKind_GLOBAL, 9999), "app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := lineServer(t, "app")
			h := newHarness(t, app)
			h.m.setDev(tc.route.Id, lineServer(t, "dev"))
			h.m.routes <- &pb.AgentRoutes{Intercepts: []*pb.InterceptInfo{tc.route}}
			if tc.want == "dev" {
				h.waitRoutes(tc.route.Id)
			} else {
				time.Sleep(100 * time.Millisecond)
				h.waitRoutes()
			}
			if got := rawExchange(t, h.a.Addr().String(), "PING\n"); got != tc.want+":PING\n" {
				t.Errorf("raw TCP: got %q, want %q", got, tc.want+":PING\n")
			}
			c := newClient(t, false)
			if got := c.do(t, "GET", h.url+"/", ""); got != tc.want+" http" {
				t.Errorf("HTTP: got %q, want %q", got, tc.want+" http")
			}
		})
	}
}

// TestNotHTTPWithHTTPIntercept: bytes that are not HTTP go to the app, with
// the peeked ones first.
func TestNotHTTPWithHTTPIntercept(t *testing.T) {
	app := lineServer(t, "app")
	h := newHarness(t, app)
	h.m.setDev("x", httpServer(t, "dev"))
	h.setRoutes(httpIntercept("x", map[string]string{"x-user": "alice"}, ""))
	for _, msg := range []string{"PING\n", "GE\n", "a much longer line than the peek reads\n"} {
		if got := rawExchange(t, h.a.Addr().String(), msg); got != "app:"+msg {
			t.Errorf("got %q, want %q", got, "app:"+msg)
		}
	}
	if n := h.m.opened("x"); n != 0 {
		t.Errorf("%d flows opened for the HTTP intercept, want 0", n)
	}
}

// TestDeveloperGone: when the intercept's flow is refused or not answered,
// requests go to the app, without waiting longer than the open timeout,
// and so do whole connections.
func TestDeveloperGone(t *testing.T) {
	app := httpServer(t, "app")
	h := newHarness(t, app, func(c *Config) { c.OpenTimeout = 500 * time.Millisecond })
	h.m.setDev("slow", hang) // "gone" has no developer: refused
	h.setRoutes(
		httpIntercept("gone", map[string]string{"x-user": "alice"}, ""),
		httpIntercept("slow", map[string]string{"x-user": "bob"}, ""),
	)
	c := newClient(t, false)
	for _, user := range []string{"alice", "bob"} {
		for i := range 3 {
			start := time.Now()
			got := c.do(t, "POST", h.url+"/", "payload", "x-user="+user)
			if want := "app proto=1 host=web.example body=payload"; got != want {
				t.Errorf("%s #%d: got %q, want %q", user, i, got, want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s #%d took %s", user, i, d)
			}
		}
	}
	for _, id := range []string{"gone", "slow"} {
		if n := h.m.opened(id); n != 1 {
			t.Errorf("%d opens for %s, want 1: after a failure the intercept rests", n, id)
		}
	}

	h.setRoutes(wholeIntercept("g", pb.InterceptKind_GLOBAL, testPort))
	if got := c.do(t, "GET", h.url+"/", ""); !strings.HasPrefix(got, "app ") {
		t.Errorf("global intercept without developer, open HTTP connection: got %q, want the app", got)
	}
	time.Sleep(cooldown) // the next connection tries the intercept again
	if got := newClient(t, false).do(t, "GET", h.url+"/", ""); !strings.HasPrefix(got, "app ") {
		t.Errorf("global intercept without developer, new connection: got %q, want the app", got)
	}
	if n := h.m.opened("g"); n != 2 {
		t.Errorf("%d opens for g, want 2", n)
	}
}

// TestManagerGone: when the route stream ends everything goes to the app;
// the agent reconnects and follows the new manager's table.
func TestManagerGone(t *testing.T) {
	app := lineServer(t, "app")
	h := newHarness(t, app)
	h.m.setDev("g", lineServer(t, "dev"))
	h.setRoutes(wholeIntercept("g", pb.InterceptKind_GLOBAL, testPort))
	if got := rawExchange(t, h.a.Addr().String(), "one\n"); got != "dev:one\n" {
		t.Fatalf("got %q, want the developer", got)
	}
	h.endWatch()
	h.waitRoutes()
	if got := rawExchange(t, h.a.Addr().String(), "two\n"); got != "app:two\n" {
		t.Errorf("manager gone: got %q, want the app", got)
	}
	h.setRoutes(wholeIntercept("g", pb.InterceptKind_GLOBAL, testPort)) // blocks until the agent is back
	if got := rawExchange(t, h.a.Addr().String(), "three\n"); got != "dev:three\n" {
		t.Errorf("manager back: got %q, want the developer", got)
	}
}

// TestStopWithLiveConnections: Run returns promptly with connections and
// flows open (the harness checks it, goleak checks their goroutines).
func TestStopWithLiveConnections(t *testing.T) {
	var conns []net.Conn
	t.Cleanup(func() { // after the harness's: the agent stops under live connections
		for _, c := range conns {
			c.Close()
		}
	})
	app := tcpServer(t, func(c net.Conn) { io.Copy(c, c) })
	dev := tcpServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	h := newHarness(t, app)
	h.m.setDev("x", dev)
	h.setRoutes(httpIntercept("x", map[string]string{"x-user": "alice"}, ""))
	for _, msg := range []string{"hello\n", "GET / HTTP/1.1\r\nHost: a\r\nX-User: alice\r\n\r\n"} {
		c, err := net.Dial("tcp", h.a.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, msg)
	}
	for h.m.opened("x") == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	b := make([]byte, 6)
	if _, err := io.ReadFull(conns[0], b); err != nil || string(b) != "hello\n" {
		t.Fatalf("echo: %q, %v", b, err)
	}
}

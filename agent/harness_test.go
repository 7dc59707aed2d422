package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/manager"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testWorkload = "ns/web"
	testPort     = 8080
	testToken    = "s3cret"
	// hang is a developer address that makes the fake manager never answer.
	hang = "hang"
)

// fakeManager is the manager's side of WatchAgent and AgentTunnel. The test
// feeds route tables through routes, ends the current watch through
// endWatch, and says per intercept id where its developer listens (absent:
// the flow is refused).
type fakeManager struct {
	pb.UnimplementedManagerServer
	t        testing.TB
	routes   chan *pb.AgentRoutes
	endWatch chan struct{}
	srv      *grpc.Server
	addr     string

	mu    sync.Mutex // guards devs, opens, auth
	devs  map[string]string
	opens map[string]int
	auth  map[string]bool // authorization values seen
}

func newFakeManager(t testing.TB) *fakeManager {
	m := &fakeManager{
		t: t, routes: make(chan *pb.AgentRoutes), endWatch: make(chan struct{}),
		devs: map[string]string{}, opens: map[string]int{}, auth: map[string]bool{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.addr = ln.Addr().String()
	m.srv = grpc.NewServer()
	pb.RegisterManagerServer(m.srv, m)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		m.srv.Stop()
		<-done
	})
	return m
}

func (m *fakeManager) setDev(id, addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.devs[id] = addr
}

func (m *fakeManager) opened(id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.opens[id]
}

func (m *fakeManager) noteAuth(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.auth[strings.Join(md.Get("authorization"), ",")] = true
}

func (m *fakeManager) WatchAgent(req *pb.WatchAgentRequest, stream grpc.ServerStreamingServer[pb.AgentRoutes]) error {
	m.noteAuth(stream.Context())
	if req.Workload != testWorkload {
		return status.Errorf(codes.NotFound, "no workload %q", req.Workload)
	}
	// The agent declares its port, which replace intercepts then cover.
	if !slices.Equal(req.Ports, []uint32{testPort}) {
		return status.Errorf(codes.InvalidArgument, "ports %v, want [%d]", req.Ports, testPort)
	}
	for {
		select {
		case r := <-m.routes:
			if err := stream.Send(r); err != nil {
				return err
			}
		case <-m.endWatch:
			return status.Error(codes.Unavailable, "manager restarting")
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

// AgentTunnel answers like a manager whose developer's daemon dialed devs[id],
// relaying the flow to it; it refuses unknown ids.
func (m *fakeManager) AgentTunnel(stream grpc.BidiStreamingServer[pb.Frame, pb.Frame]) error {
	m.noteAuth(stream.Context())
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	id := first.GetOpen().GetInterceptId()
	m.mu.Lock()
	m.opens[id]++
	addr, ok := m.devs[id]
	m.mu.Unlock()
	refuse := func(msg string) error {
		return stream.Send(&pb.Frame{Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_REFUSED, Error: msg}})
	}
	switch {
	case first.GetOpen().GetProtocol() != pb.Protocol_TCP || first.GetOpen().GetSource() == "":
		return status.Errorf(codes.InvalidArgument, "bad open frame %v", first.GetOpen())
	case !ok:
		return refuse("the developer left")
	case addr == hang:
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return refuse(err.Error())
	}
	defer conn.Close()
	if err := stream.Send(&pb.Frame{Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_OK}}); err != nil {
		return err
	}
	// The handler's return cancels the stream, which ends this goroutine.
	errc := make(chan error, 1)
	go func() {
		for {
			f, err := stream.Recv()
			if err == io.EOF {
				errc <- conn.(*net.TCPConn).CloseWrite()
				return
			}
			if err != nil {
				conn.Close()
				errc <- err
				return
			}
			if _, err := conn.Write(f.Data); err != nil {
				errc <- err
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if serr := stream.Send(&pb.Frame{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if err == io.EOF {
			if err := stream.Send(&pb.Frame{Control: pb.Control_EOF}); err != nil {
				return err
			}
			return <-errc
		}
		if err != nil {
			return status.Error(codes.Aborted, err.Error())
		}
	}
}

// harness runs an agent against a fake manager.
type harness struct {
	t   testing.TB
	m   *fakeManager
	a   *Agent
	url string
}

func newHarness(t testing.TB, app string, tweak ...func(*Config)) *harness {
	t.Helper()
	m := newFakeManager(t)
	cfg := Config{
		Manager: m.addr, Workload: testWorkload, Port: testPort, App: app, Listen: "127.0.0.1:0",
		Token: testToken, OpenTimeout: 2 * time.Second, PeekTimeout: 300 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return 10s after its context ended")
		}
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		for v := range m.auth {
			if v != "Bearer "+testToken {
				t.Errorf("a call came with authorization %q", v)
			}
		}
	})
	return &harness{t: t, m: m, a: a, url: "http://" + a.Addr().String()}
}

// setRoutes sends a table through the watch stream and waits until the
// agent uses it.
func (h *harness) setRoutes(infos ...*pb.InterceptInfo) {
	h.t.Helper()
	select {
	case h.m.routes <- &pb.AgentRoutes{Intercepts: infos}:
	case <-time.After(10 * time.Second):
		h.t.Fatal("the agent does not watch routes")
	}
	var want []string
	for _, i := range infos {
		want = append(want, i.Id)
	}
	h.waitRoutes(want...)
}

// waitRoutes waits until the agent's table holds exactly ids.
func (h *harness) waitRoutes(ids ...string) {
	h.t.Helper()
	sort.Strings(ids)
	want := strings.Join(ids, ",")
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []string
		for id := range h.a.routes.Load().all() {
			got = append(got, id)
		}
		sort.Strings(got)
		if strings.Join(got, ",") == want {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("agent routes %v, want %v", got, ids)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// endWatch ends the current watch stream, as a restarting manager does.
func (h *harness) endWatch() {
	h.t.Helper()
	select {
	case h.m.endWatch <- struct{}{}:
	case <-time.After(10 * time.Second):
		h.t.Fatal("the agent does not watch routes")
	}
}

func httpIntercept(id string, headers map[string]string, path string) *pb.InterceptInfo {
	return &pb.InterceptInfo{Id: id, State: "ACTIVE", Spec: &pb.InterceptSpec{
		Name: "n-" + id, Workload: testWorkload, Port: testPort, Kind: pb.InterceptKind_HTTP, Headers: headers, Path: path,
	}}
}

func wholeIntercept(id string, kind pb.InterceptKind, port uint32) *pb.InterceptInfo {
	return &pb.InterceptInfo{Id: id, State: "ACTIVE", Spec: &pb.InterceptSpec{
		Name: "n-" + id, Workload: testWorkload, Port: port, Kind: kind,
	}}
}

// httpServer is an app or a developer's server: it answers "NAME proto=P
// host=H body=B", over HTTP/1.1 or h2c.
func httpServer(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s proto=%d host=%s body=%s", name, r.ProtoMajor, r.Host, b)
	}))
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetHTTP1(true)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// tcpServer serves every connection with fn until the test ends.
func tcpServer(t *testing.T, fn func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				fn(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// lineServer answers one HTTP request with "NAME http" and any other first
// line with "NAME:LINE": a developer's server for whole-traffic intercepts.
func lineServer(t *testing.T, name string) string {
	return tcpServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.HasSuffix(strings.TrimSpace(line), "HTTP/1.1") {
			for {
				l, err := r.ReadString('\n')
				if err != nil || l == "\r\n" {
					break
				}
			}
			body := name + " http"
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
			return
		}
		fmt.Fprintf(c, "%s:%s", name, line)
	})
}

// client is an HTTP client that counts its connections.
type client struct {
	*http.Client
	tr    *http.Transport
	mu    sync.Mutex
	dials int
}

// newClient speaks HTTP/1.1 with keep-alive, or h2c with prior knowledge.
func newClient(t *testing.T, h2c bool) *client {
	c := &client{}
	c.tr = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.mu.Lock()
			c.dials++
			c.mu.Unlock()
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		MaxConnsPerHost: 1,
	}
	if h2c {
		c.tr.Protocols = new(http.Protocols)
		c.tr.Protocols.SetUnencryptedHTTP2(true)
	}
	c.Client = &http.Client{Transport: c.tr, Timeout: 10 * time.Second}
	t.Cleanup(c.tr.CloseIdleConnections)
	return c
}

func (c *client) connections() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dials
}

// do sends a request and returns the answer's body; header holds
// name=value pairs.
func (c *client) do(t *testing.T, method, url, body string, header ...string) string {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "web.example"
	for _, h := range header {
		k, v, _ := strings.Cut(h, "=")
		req.Header.Add(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s %v: %v", method, url, header, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s %v: read body: %v", method, url, header, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s %v: %s %s", method, url, header, resp.Status, b)
	}
	return string(b)
}

// rawExchange connects, sends msg, half-closes and returns all it reads.
func rawExchange(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("raw exchange: %v (read %q)", err, b)
	}
	return string(b)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

package netlab

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// These tests use loopback sockets of the current namespace, so they run anywhere. The lab
// tests in netlab_test.go run the same servers inside namespaces.

// checkNoServerGoroutines fails if a goroutine of the servers is still alive: every stop
// function must wait for what it started.
func checkNoServerGoroutines(t *testing.T) {
	t.Helper()
	markers := []string{"netlab.serveStream", "netlab.servePacket", "netlab.ServeHTTP", "net/http.(*conn).serve"}
	deadline := time.Now().Add(2 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var leaked []string
		for _, g := range strings.Split(stacks, "\n\n") {
			for _, m := range markers {
				if strings.Contains(g, m) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d server goroutines left after stop:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestServeSink(t *testing.T) {
	ln := listenLoopback(t)
	stop := ServeSink(ln)
	defer checkNoServerGoroutines(t)
	defer stop()

	for _, size := range []int{0, 1, 1 << 20} {
		sum, err := sendToSink(context.Background(), func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ln.Addr().String())
		}, int64(size))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !sum {
			t.Fatalf("size %d: checksum mismatch", size)
		}
	}
}

// sendToSink sends size pseudo-random bytes to a ServeSink server and reports whether the
// checksum it returns matches.
func sendToSink(ctx context.Context, dial func(context.Context) (net.Conn, error), size int64) (bool, error) {
	c, err := dial(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	h := sha256.New()
	src := io.LimitReader(rand.NewChaCha8([32]byte{1}), size)
	if _, err := io.Copy(io.MultiWriter(c, h), src); err != nil {
		return false, err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return false, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return false, err
	}
	return line == hex.EncodeToString(h.Sum(nil))+"\n", nil
}

func TestServeEcho(t *testing.T) {
	ln := listenLoopback(t)
	stop := ServeEcho(ln)
	defer checkNoServerGoroutines(t)
	defer stop()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := strings.Repeat("echo ", 100000)
	go func() {
		io.WriteString(c, msg)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c) // ends only if the server half-closes
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echoed %d bytes, want %d", len(got), len(msg))
	}
}

// TestStopWithOpenConnections checks that stop closes connections still open and waits.
func TestStopWithOpenConnections(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(net.Listener) func()
	}{
		{"echo", ServeEcho},
		{"sink", ServeSink},
		{"http", func(ln net.Listener) func() {
			return ServeHTTP(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := listenLoopback(t)
			stop := tc.serve(ln)
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			time.Sleep(50 * time.Millisecond) // let the server pick the connection up
			stopped := make(chan struct{})
			go func() { stop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				t.Fatal("stop hangs with an open connection")
			}
			stop() // again: no-op
			checkNoServerGoroutines(t)
		})
	}
}

func TestServeHTTP(t *testing.T) {
	ln := listenLoopback(t)
	stop := ServeHTTP(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	}))
	defer checkNoServerGoroutines(t)
	defer stop()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + ln.Addr().String() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello /x" {
		t.Fatalf("body %q", body)
	}
}

func TestServeUDPEcho(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := ServeUDPEcho(pc)
	defer checkNoServerGoroutines(t)
	defer stop()

	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for _, msg := range []string{"a", strings.Repeat("b", 1400)} {
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:n]) != msg {
			t.Fatalf("echo %q, want %q", buf[:n], msg)
		}
	}
}

func dnsQuery(t testing.TB, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 4242, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestAnswerDNS(t *testing.T) {
	zone := map[string]netip.Addr{
		"svc.test.":  netip.MustParseAddr("198.18.2.42"),
		"six.test.":  netip.MustParseAddr("2001:db8::1"),
		"mapped.tst": netip.MustParseAddr("::ffff:198.18.2.43"),
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := ServeDNS(pc, zone)
	defer checkNoServerGoroutines(t)
	defer stop()
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for _, tc := range []struct {
		name   string
		qname  string
		qtype  dnsmessage.Type
		rcode  dnsmessage.RCode
		answer string // "" for no answer
	}{
		{"a", "svc.test.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.18.2.42"},
		{"case-insensitive", "SvC.TeSt.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.18.2.42"},
		{"key without dot, v4-mapped", "mapped.tst.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.18.2.43"},
		{"aaaa of a v4 name", "svc.test.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, ""},
		{"aaaa", "six.test.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, "2001:db8::1"},
		{"nxdomain", "nope.test.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(dnsQuery(t, tc.qname, tc.qtype)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1500)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			var m dnsmessage.Message
			if err := m.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if m.ID != 4242 || !m.Response || !m.Authoritative || m.RCode != tc.rcode {
				t.Fatalf("header %+v, want id 4242, response, authoritative, rcode %v", m.Header, tc.rcode)
			}
			if len(m.Questions) != 1 || m.Questions[0].Name.String() != tc.qname {
				t.Fatalf("questions %v", m.Questions)
			}
			var got string
			for _, a := range m.Answers {
				switch r := a.Body.(type) {
				case *dnsmessage.AResource:
					got = netip.AddrFrom4(r.A).String()
				case *dnsmessage.AAAAResource:
					got = netip.AddrFrom16(r.AAAA).String()
				}
			}
			if len(m.Answers) > 1 || got != tc.answer {
				t.Fatalf("answers %v, want %q", m.Answers, tc.answer)
			}
		})
	}
}

func FuzzAnswerDNS(f *testing.F) {
	f.Add(dnsQuery(f, "svc.test.", dnsmessage.TypeA))
	f.Add(dnsQuery(f, "other.test.", dnsmessage.TypeAAAA))
	f.Add([]byte{})
	zone := map[string]netip.Addr{"svc.test.": netip.MustParseAddr("198.18.2.42")}
	f.Fuzz(func(t *testing.T, msg []byte) {
		out := answerDNS(msg, zone)
		if out == nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(out)
		if err != nil {
			t.Fatalf("unparsable response: %v", err)
		}
		if !h.Response || len(msg) < 2 || h.ID != uint16(msg[0])<<8|uint16(msg[1]) {
			t.Fatalf("bad response header %+v", h)
		}
	})
}

// Command testapp is the test cluster's workload and its client, in one
// static binary so a pod needs no shell or busybox:
//
//	testapp [serve]      answer HTTP on $PORT (8080) with the pod name and the request's headers;
//	                     GET /bytes?n=N writes N zero bytes, POST or PUT /sink reads and
//	                     discards the body (the bulk benchmarks); on $FIRST_PORT (8082) write
//	                     one byte on accept and wait for the client to close (the connect
//	                     benchmark)
//	testapp get URL      print the body of a GET; an https URL is verified with the
//	                     pod's service account CA and sent its token, as in-cluster clients do
//	testapp lookup NAME  print the addresses NAME resolves to
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		args = []string{"serve"}
	}
	var err error
	switch {
	case args[0] == "serve":
		err = serve()
	case args[0] == "get" && len(args) == 2:
		err = get(args[1])
	case args[0] == "lookup" && len(args) == 2:
		err = lookup(args[1])
	default:
		err = fmt.Errorf("usage: testapp [serve] | get URL | lookup NAME")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func serve() error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	host, _ := os.Hostname()
	pod := os.Getenv("POD_NAME")
	if pod == "" {
		pod = host
	}
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pod=%s\nhost=%s\nmethod=%s\npath=%s\n", pod, host, r.Method, r.URL.Path)
		names := make([]string, 0, len(r.Header))
		for k := range r.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			for _, v := range r.Header[k] {
				fmt.Fprintf(w, "header %s: %s\n", k, v)
			}
		}
	})
	mux := http.NewServeMux()
	mux.Handle("/", echo)
	mux.HandleFunc("GET /bytes", sendBytes)
	mux.HandleFunc("POST /sink", sink)
	mux.HandleFunc("PUT /sink", sink)
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	firstPort := os.Getenv("FIRST_PORT")
	if firstPort == "" {
		firstPort = "8082"
	}
	ln, err := net.Listen("tcp", ":"+firstPort)
	if err != nil {
		return err
	}
	go serveFirstByte(ln) // ends when the process does
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// maxBytes bounds GET /bytes: a benchmark's transfer, not a way to fill
// a laptop's disk.
const maxBytes = 4 << 30

// sendBytes writes the n zero bytes of GET /bytes?n=N, with a
// Content-Length so the client knows when the transfer is complete.
func sendBytes(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 || n > maxBytes {
		http.Error(w, fmt.Sprintf("n must be a byte count from 0 to %d", int64(maxBytes)), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	buf := make([]byte, 256<<10)
	for n > 0 {
		k, err := w.Write(buf[:min(n, int64(len(buf)))])
		if err != nil {
			return // the client went away
		}
		n -= int64(k)
	}
}

// sink reads the request's body to its end and says how many bytes it got.
func sink(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%d\n", n)
}

// serveFirstByte writes one byte on each accepted connection and keeps it
// until the client closes, as the namespace lab's connect benchmark server.
func serveFirstByte(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			if _, err := c.Write([]byte{1}); err != nil {
				return
			}
			c.Read(make([]byte, 1))
		}()
	}
}

// serviceAccount is where kubelet mounts the pod's service account.
const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount/"

func get(url string) error {
	c := &http.Client{Timeout: 10 * time.Second}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	if strings.HasPrefix(url, "https://") {
		ca, err := os.ReadFile(serviceAccount + "ca.crt")
		if err != nil {
			return err
		}
		token, err := os.ReadFile(serviceAccount + "token")
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func lookup(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		fmt.Println(a)
	}
	return nil
}

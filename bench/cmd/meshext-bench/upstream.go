package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The upstreams run in a child process (`meshext-bench upstream`) so their CPU
// and garbage collection are apart from the load generator's and the harness's.

// upstreamBody is the fixed HTTP response body: small, so the figures measure
// proxying cost rather than copying.
var upstreamBody = []byte(strings.Repeat("x", 64))

func runUpstream(args []string) int {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	kind := fs.String("kind", "http", "http | https | grpc | tcp")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	cert := fs.String("cert", "", "server certificate PEM (https)")
	key := fs.String("key", "", "server key PEM (https)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: meshext-bench upstream -kind http|https|grpc|tcp [-addr 127.0.0.1:0] [-cert F -key F]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		return 1
	}
	// The parent reads this line to learn the port.
	fmt.Printf("LISTENING %s\n", ln.Addr())
	os.Stdout.Sync()
	switch *kind {
	case "http":
		err = (&http.Server{Handler: http.HandlerFunc(okHandler)}).Serve(ln)
	case "https":
		c, lerr := tls.LoadX509KeyPair(*cert, *key)
		if lerr != nil {
			fmt.Fprintln(os.Stderr, "upstream:", lerr)
			return 1
		}
		srv := &http.Server{Handler: http.HandlerFunc(okHandler),
			// Load generators hang up mid-handshake at the end of a run; not news.
			ErrorLog:  log.New(io.Discard, "", 0),
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{c}, NextProtos: []string{"http/1.1"}}}
		err = srv.Serve(tls.NewListener(ln, srv.TLSConfig))
	case "grpc":
		// A real gRPC server; h2load sends grpc.health.v1.Health/Check frames.
		s := grpc.NewServer()
		h := health.NewServer()
		h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(s, h)
		err = s.Serve(ln)
	case "tcp":
		err = serveEcho(ln)
	default:
		err = fmt.Errorf("unknown kind %q", *kind)
	}
	fmt.Fprintln(os.Stderr, "upstream:", err)
	return 1
}

func okHandler(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(upstreamBody)
}

func serveEcho(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			buf := make([]byte, 64<<10)
			_, _ = io.CopyBuffer(c, c, buf)
		}()
	}
}

// child is a process the harness started and stops.
type child struct {
	cmd  *exec.Cmd
	addr string // for upstreams: the listen address it printed
}

// startUpstream re-executes this binary as an upstream and waits (bounded)
// for its LISTENING line.
func startUpstream(kind, cert, key string) (*child, error) {
	self := selfPath
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	args := []string{"upstream", "-kind", kind}
	if cert != "" {
		args = append(args, "-cert", cert, "-key", key)
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l, ok := <-line:
		if !ok || !strings.HasPrefix(l, "LISTENING ") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("upstream %s did not start (%q)", kind, l)
		}
		return &child{cmd: cmd, addr: strings.TrimPrefix(l, "LISTENING ")}, nil
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, errors.New("upstream " + kind + " did not report its address within 10s")
	}
}

func (c *child) stop() {
	if c == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// waitTCP dials addr until it accepts or the context ends.
func waitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not accepting: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

package testnet

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Serve accepts connections on l until the test ends (then l is closed)
// and runs handle on each in its own goroutine, closing the connection
// when handle returns; it returns l's port.
func Serve(t testing.TB, l net.Listener, handle func(net.Conn)) int {
	t.Helper()
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// LineServer is a plain loopback TCP server that writes one line to each
// connection and closes it, until the test ends; it returns the port.
func LineServer(t testing.TB, line string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, l, func(c net.Conn) { fmt.Fprintln(c, line) })
}

// GRPCHealthServer serves the standard gRPC health service (h2c) on
// loopback until the test ends; it returns host:port.
func GRPCHealthServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

// HTTPServer serves h over HTTP/1.1 on loopback until the test ends; it
// returns the port.
func HTTPServer(t testing.TB, h http.Handler) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// LineSink accepts loopback TCP connections until the test ends and
// collects the lines they send (each connection bounded to 60 s), as a
// TCP log collector would; it returns its address and the lines so far.
func LineSink(t testing.TB) (addr string, lines func() []string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	Serve(t, l, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(60 * time.Second))
		sc := bufio.NewScanner(c)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mu.Lock()
			got = append(got, sc.Text())
			mu.Unlock()
		}
	})
	return l.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

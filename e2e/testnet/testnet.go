// Package testnet holds the loopback helpers many tests share: a free port,
// an echo backend and a bounded "echo through this address" check.
package testnet

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/envoyproc"
)

// FreePort returns a loopback port that is free for TCP and UDP at the
// moment, below the kernel's ephemeral range, and was not returned before
// in this test binary (Envoy binds it shortly after; a collision only fails
// that test, loudly): envoyproc.FreePort, failing t when there is none.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := envoyproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// EchoServer accepts loopback TCP connections and echoes what it reads
// (each connection bounded to 10 s) until the test ends; it returns the port.
func EchoServer(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, l, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(c, c)
	})
}

// EchoThrough sends msg to addr and expects it back, retrying every 50 ms
// while the listener is not there yet; it fails the test after timeout.
func EchoThrough(t testing.TB, addr, msg string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = echoOnce(addr, msg); last == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no echo through %s within %v: %v", addr, timeout, last)
}

func echoOnce(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

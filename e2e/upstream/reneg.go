package upstream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testpki"
)

// RenegotiatingServer is a TLS 1.2 server that can ask its connected client
// to renegotiate, for testing MeshExternalService `tls.allowRenegotiation`.
// Go's crypto/tls cannot initiate renegotiation, so this drives
// `openssl s_server`, whose stdin commands do: a line "r" renegotiates the
// current connection, any other line is sent to the client, and what the
// client sends appears on its stdout. It serves one connection at a time.
type RenegotiatingServer struct {
	addr  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *testenv.SyncBuffer
	dir   string
	done  chan struct{}
}

// StartRenegotiatingServer runs opensslPath (e.g. testenv.Tool(t, "openssl"))
// as a TLS 1.2-only server with cert on host (an IP; the port is picked
// free). It returns once the server listens (bounded by 10 s).
func StartRenegotiatingServer(opensslPath, host string, cert *testpki.Leaf) (*RenegotiatingServer, error) {
	dir, err := os.MkdirTemp("", "meshext-reneg-")
	if err != nil {
		return nil, err
	}
	crt, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := cert.WriteFiles(crt, key); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// openssl wants a concrete port: take a free one (a tiny race with other
	// processes binding it in between is acceptable for tests).
	probe, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("upstream: renegotiating server: %w", err)
	}
	addr := probe.Addr().String()
	probe.Close()

	r := &RenegotiatingServer{addr: addr, out: &testenv.SyncBuffer{}, dir: dir, done: make(chan struct{})}
	r.cmd = exec.Command(opensslPath, "s_server", "-accept", addr, "-cert", crt, "-key", key,
		"-tls1_2", "-no_ticket")
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := r.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("upstream: start %s s_server: %w", opensslPath, err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	if err := r.WaitOutput("ACCEPT", 10*time.Second); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Addr is the host:port it listens on.
func (r *RenegotiatingServer) Addr() string { return r.addr }

// Output is everything openssl printed so far (what clients sent, handshake notes).
func (r *RenegotiatingServer) Output() string { return r.out.String() }

// WaitOutput waits until Output contains s, or fails after timeout or exit.
func (r *RenegotiatingServer) WaitOutput(s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(r.out.String(), s) {
		select {
		case <-r.done:
			return fmt.Errorf("upstream: openssl s_server exited before printing %q:\n%s", s, r.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("upstream: openssl s_server did not print %q within %s:\n%s", s, timeout, r.out.String())
		}
	}
	return nil
}

// Renegotiate asks the connected client for a new handshake (HelloRequest).
func (r *RenegotiatingServer) Renegotiate() error {
	_, err := io.WriteString(r.stdin, "r\n")
	return err
}

// Send writes one line to the connected client.
func (r *RenegotiatingServer) Send(line string) error {
	if line == "r" || line == "R" || line == "q" || line == "Q" || strings.ContainsAny(line, "\r\n") {
		return errors.New("upstream: that line would be an s_server command")
	}
	_, err := io.WriteString(r.stdin, line+"\n")
	return err
}

// Close stops openssl and removes its key material.
func (r *RenegotiatingServer) Close() error {
	_ = r.stdin.Close()
	_ = r.cmd.Process.Kill()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
	}
	return os.RemoveAll(r.dir)
}

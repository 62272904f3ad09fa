package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testenv"
)

// The hand-written baselines must be configs the real Envoy accepts.
func TestHandwrittenConfigsValidate(t *testing.T) {
	envoy := testenv.Envoy(t)
	dir := t.TempDir()
	certs, err := makePKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A format like the one render emits: quotes, operators, a newline.
	logFormat := "[%START_TIME%] x \"%REQ(:METHOD)%\" tls_failure=\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\"\n"
	for _, p := range protos {
		for _, withLog := range []bool{false, true} {
			path := filepath.Join(dir, fmt.Sprintf("%s-%v.yaml", p.key, withLog))
			hp := handParams{Proto: p.key, ListenPort: 10000, UpHost: "127.0.0.1", UpPort: 10001,
				CAFile: certs.caFile, ServerName: upstreamServerName}
			if withLog {
				hp.AccessLogFormat = logFormat
			}
			if err := writeHandConfig(path, hp); err != nil {
				t.Fatal(err)
			}
			if out, err := envoyproc.Validate(envoy, path); err != nil {
				t.Errorf("%s (access log %v): envoy --mode validate: %v\n%s", p.key, withLog, err, out)
			}
			if data, _ := os.ReadFile(path); withLog != strings.Contains(string(data), "StdoutAccessLog") {
				t.Errorf("%s: access log present = %v, want %v", p.key, !withLog, withLog)
			}
		}
	}
}

// The TCP load generator against a real echo server on loopback.
func TestTCPEchoMeasures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveEcho(ln)
	r, err := tcpEcho(context.Background(), ln.Addr().String(), 2, 1024, 200*time.Millisecond, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests == 0 || r.Errors != 0 || r.MBps <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
		t.Errorf("implausible result %+v", r)
	}
	if _, err := tcpEcho(context.Background(), "127.0.0.1:1", 1, 1024, 100*time.Millisecond, 0); err == nil {
		t.Error("echo against a closed port reported success")
	}
}

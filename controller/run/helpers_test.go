package run

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testpki"
)

// dropWrite writes a resource file the way a careful user or tool does
// (temp file + rename) so the watcher sees one complete file.
func dropWrite(t testing.TB, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

const generatorYAML = `type: HostnameGenerator
name: gen
mesh: default
labels:
  kuma.io/mesh: default
spec:
  selector:
    meshExternalService:
      matchLabels:
        kuma.io/origin: zone
  template: "{{ .DisplayName }}.svc.meshext.local"
`

func tcpMES(name string, matchPort, endpointPort int) string {
	return fmt.Sprintf(`type: MeshExternalService
name: %s
mesh: default
labels:
  kuma.io/mesh: default
spec:
  match:
    type: HostnameGenerator
    port: %d
    protocol: tcp
  endpoints:
  - address: 127.0.0.1
    port: %d
`, name, matchPort, endpointPort)
}

// tlsMES originates TLS trusting the CA in the named Secret.
func tlsMES(name string, matchPort, endpointPort int, secret string) string {
	return tcpMES(name, matchPort, endpointPort) + fmt.Sprintf(`  tls:
    enabled: true
    verification:
      serverName: %s.example.test
      caCert:
        secret: %s
`, name, secret)
}

func secretYAML(name string, data []byte) string {
	return fmt.Sprintf("type: Secret\nname: %s\nmesh: default\ndata: %s\n", name, base64.StdEncoding.EncodeToString(data))
}

func dataplaneYAML(name string, redirectPort int) string {
	return fmt.Sprintf(`type: Dataplane
mesh: default
name: %s
networking:
  address: 127.0.0.1
  transparentProxying:
    redirectPortOutbound: %d
`, name, redirectPort)
}

// dataplaneWithOutbound adds an outbound listener on 127.0.0.1:outPort for service.
func dataplaneWithOutbound(name string, redirectPort, outPort int, service string) string {
	return dataplaneYAML(name, redirectPort) + fmt.Sprintf(`  outbound:
  - port: %d
    backendRef:
      kind: MeshExternalService
      name: %s
`, outPort, service)
}

func newCAPEM(t testing.TB) []byte {
	t.Helper()
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca.CertPEM
}

// testLogger logs through t when -v, and discards otherwise.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlog struct{ t testing.TB }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startRunner starts a Runner and stops it (bounded) at cleanup. reloads
// receives after every reload attempt.
func startRunner(t *testing.T, cfg Config) (*Runner, <-chan struct{}) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 50 * time.Millisecond
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reloads := make(chan struct{}, 100)
	r.reloaded = func() {
		select {
		case reloads <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		done := make(chan error, 1)
		go func() { done <- r.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runner: %v", err)
			}
		case <-time.After(2 * ShutdownTimeout):
			t.Errorf("runner did not stop within %v", 2*ShutdownTimeout)
		}
	})
	return r, reloads
}

// waitStatus polls the runner's status until ok accepts it.
func waitStatus(t *testing.T, r *Runner, timeout time.Duration, what string, ok func(*Status) bool) *Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := r.Status()
		if ok(&st) {
			return &st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never reached %q within %v; last: reloads=%d error=%q problems=%v renderErrors=%v", what, timeout, st.Reloads, st.Error, st.Problems, st.RenderErrors)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func service(st *Status, name string) *ServiceStatus {
	for i := range st.Services {
		if st.Services[i].Name == name {
			return &st.Services[i]
		}
	}
	return nil
}

package render

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testpki"
)

// envoyValidate runs the real `envoy --mode validate` on a static bootstrap of
// every node in out. Validation instantiates clusters, TLS contexts (with the
// static secrets) and listeners, so it catches what PGV cannot: SANs without a
// CA, unknown clusters, duplicate filter chain matches, bad cipher names.
func envoyValidate(t *testing.T, envoy string, out *Output) {
	t.Helper()
	for _, id := range out.NodeIDs() {
		b, err := StaticBootstrap(out.Nodes[id], BootstrapOptions{})
		if err != nil {
			t.Fatalf("node %s: StaticBootstrap: %v", id, err)
		}
		js, err := CanonicalJSON(b)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "bootstrap.json")
		if err := os.WriteFile(path, js, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, envoy, "--mode", "validate", "-c", path, "--disable-hot-restart", "-l", "warning")
		var outb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &outb, &outb
		err = cmd.Run()
		cancel()
		if err != nil {
			t.Fatalf("node %s: envoy --mode validate failed: %v\n%s", id, err, outb.String())
		}
		if !bytes.Contains(outb.Bytes(), []byte("OK")) {
			t.Fatalf("node %s: envoy --mode validate did not say OK:\n%s", id, outb.String())
		}
	}
}

// realPKI swaps the golden files' stand-in PEMs for a real CA and client
// certificate, which Envoy parses during validation.
func realPKI(t *testing.T, w *model.World) {
	t.Helper()
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(testpki.CommonName("meshext-client"), testpki.ClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range w.Services {
		if s.TLS == nil {
			continue
		}
		if bytes.Equal(s.TLS.CA, fakeCA) {
			s.TLS.CA = ca.CertPEM
		}
		if bytes.Equal(s.TLS.ClientCert, fakeClientCert) {
			s.TLS.ClientCert, s.TLS.ClientKey = client.CertPEM, client.KeyPEM
		}
	}
}

func TestEnvoyValidatesGoldenCases(t *testing.T) {
	envoy := testenv.Envoy(t)
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := c.world()
			realPKI(t, w)
			envoyValidate(t, envoy, mustRender(t, w, c.opts))
		})
	}
}

func TestEnvoyValidatesEveryExample(t *testing.T) {
	envoy := testenv.Envoy(t)
	dir := examplesDir(t)
	t.Run("all-with-dataplane", func(t *testing.T) {
		t.Parallel()
		out := mustRender(t, buildExamples(t, dir), Options{UpstreamDNS: "127.0.0.1:53"})
		envoyValidate(t, envoy, out)
	})
	t.Run("services-default-node", func(t *testing.T) {
		t.Parallel()
		var paths []string
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "dataplane.yaml" {
				paths = append(paths, filepath.Join(dir, e.Name()))
			}
		}
		out := mustRender(t, buildExamples(t, paths...), Options{})
		if _, ok := out.Nodes[DefaultNodeID]; !ok {
			t.Fatalf("want the default node, got %v", out.NodeIDs())
		}
		envoyValidate(t, envoy, out)
	})
}

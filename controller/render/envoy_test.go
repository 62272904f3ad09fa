package render

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/e2e/envoyproc"
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
		if log, err := runEnvoyValidate(t, envoy, b); err != nil {
			t.Fatalf("node %s: envoy --mode validate failed: %v\n%s", id, err, log)
		}
	}
}

// runEnvoyValidate writes b and runs `envoy --mode validate` on it.
func runEnvoyValidate(t *testing.T, envoy string, b proto.Message) (string, error) {
	t.Helper()
	js, err := CanonicalJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(path, js, 0o600); err != nil {
		t.Fatal(err)
	}
	return envoyproc.Validate(envoy, path)
}

// TestEnvoyValidateCatchesWhatPGVCannot proves the validation above has
// teeth: a SAN matcher without a trusted CA passes PGV, and Envoy refuses it.
func TestEnvoyValidateCatchesWhatPGVCannot(t *testing.T) {
	envoy := testenv.Envoy(t)
	tl := tlsSecured()
	tl.Mode = resource.ModeSkipCA
	w := world(withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tl))
	realPKI(t, w)
	n := onlyNode(t, mustRender(t, w, Options{}))
	b, err := StaticBootstrap(n, BootstrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if log, err := runEnvoyValidate(t, envoy, b); err != nil {
		t.Fatalf("baseline must validate: %v\n%s", err, log)
	}
	// Drop the CA secret's trusted_ca, keeping the SAN matchers.
	for _, s := range b.StaticResources.Secrets {
		if vc := s.GetValidationContext(); vc != nil {
			vc.TrustedCa = nil
		}
	}
	if err := validate(b); err != nil {
		t.Fatalf("PGV should accept this (it is structural only): %v", err)
	}
	log, err := runEnvoyValidate(t, envoy, b)
	if err == nil {
		t.Fatal("envoy accepted SAN matchers without a trusted CA")
	}
	if !strings.Contains(log, "trusted CA") && !strings.Contains(log, "trusted_ca") {
		t.Errorf("unexpected envoy error:\n%s", log)
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

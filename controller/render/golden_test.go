package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
)

// goldenCase is one hand-built world and the options to render it with.
type goldenCase struct {
	name  string
	world func() *model.World
	opts  Options
}

func tlsWith(f func(*model.TLS)) *model.TLS {
	t := tlsSecured()
	f(t)
	return t
}

// goldenCases cover every TLS mode and cluster shape the brief lists. Each
// name says what the file shows.
var goldenCases = []goldenCase{
	{name: "plain-tcp-static-ip", world: func() *model.World {
		return world(svc("pg", "tcp", 5432, ep("10.1.2.3", 5432)))
	}},
	{name: "plain-http-dns", world: func() *model.World {
		return world(svc("httpbin", "http", 80, ep("httpbin.org", 80)))
	}},
	{name: "plain-grpc-http2-upstream", world: func() *model.World {
		return world(svc("grpcbin", "grpc", 9000, ep("grpcbin.test.k6.io", 9000)), svc("h2", "http2", 8443, ep("10.0.0.9", 8443)))
	}},
	{name: "upstream-dns-resolver", opts: Options{UpstreamDNS: "127.0.0.1:5353"}, world: func() *model.World {
		return world(svc("httpbin", "http", 80, ep("httpbin.org", 80)))
	}},
	{name: "unix-endpoint", world: func() *model.World {
		return world(svc("sock", "http", 80, ep("unix:///run/app.sock", 0)))
	}},
	{name: "mixed-ip-and-dns-is-strict-dns", world: func() *model.World {
		return world(svc("mixed", "tcp", 443, ep("10.0.0.1", 443), ep("api.example.com", 443)))
	}},
	{name: "priorities-ranked-dense", world: func() *model.World {
		return world(svc("failover", "tcp", 443, prio(ep("primary.example.com", 443), 0), prio(ep("backup.example.com", 443), 5), prio(ep("10.9.9.9", 443), 5)))
	}},
	{name: "tls-secured-inline-ca-servername", world: func() *model.World {
		return world(withTLS(svc("api", "http", 443, ep("api.example.com", 443)), tlsWith(func(t *model.TLS) { t.ServerName = "api.example.com" })))
	}},
	{name: "tls-secured-system-ca", world: func() *model.World {
		return world(withTLS(svc("api", "http", 443, ep("api.example.com", 443)), tlsWith(func(t *model.TLS) {
			t.CA, t.CASource, t.SystemCAPath = nil, "system:"+systemCAPath, systemCAPath
		})))
	}},
	{name: "tls-secured-no-ca-fails-closed", world: func() *model.World {
		return world(withTLS(svc("api", "http", 443, ep("api.example.com", 443)), tlsWith(func(t *model.TLS) { t.CA, t.CASource = nil, "" })),
			svc("other", "tcp", 22, ep("10.0.0.2", 22)))
	}},
	{name: "tls-skipsan-keeps-servername", world: func() *model.World {
		return world(withTLS(svc("api", "tcp", 443, ep("10.0.0.5", 443)), tlsWith(func(t *model.TLS) { t.Mode, t.ServerName = resource.ModeSkipSAN, "api.internal" })))
	}},
	{name: "tls-skipca-accept-untrusted-san-counted-not-enforced", world: func() *model.World {
		return world(withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tlsWith(func(t *model.TLS) {
			t.Mode, t.CA, t.SystemCAPath = resource.ModeSkipCA, nil, systemCAPath
			t.SANs = []resource.SubjectAltName{{Type: resource.SANExact, Value: "api.example.com"}}
		})))
	}},
	{name: "tls-skipca-without-any-ca-no-validation", world: func() *model.World {
		return world(withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tlsWith(func(t *model.TLS) { t.Mode, t.CA = resource.ModeSkipCA, nil })))
	}},
	{name: "tls-skipall-keeps-client-cert", world: func() *model.World {
		return world(withTLS(svc("api", "tcp", 443, ep("api.example.com", 443)), tlsWith(func(t *model.TLS) {
			t.Mode, t.CA = resource.ModeSkipAll, nil
			t.ClientCert, t.ClientKey, t.ClientCertSource = fakeClientCert, fakeClientKey, "inline"
		})))
	}},
	{name: "tls-versions-tls13-only", world: func() *model.World {
		return world(withTLS(svc("api", "http", 443, ep("api.example.com", 443)), tlsWith(func(t *model.TLS) { t.MinVersion, t.MaxVersion = resource.TLS13, resource.TLS13 })))
	}},
	{name: "tls-versions-legacy-tls10-tls11-ciphers", world: func() *model.World {
		return world(withTLS(svc("old", "tcp", 443, ep("old.example.com", 443)), tlsWith(func(t *model.TLS) { t.MinVersion, t.MaxVersion = resource.TLS10, resource.TLS11 })))
	}},
	{name: "tls-san-types-uri-ip-dns-prefix", world: func() *model.World {
		return world(withTLS(svc("api", "grpc", 443, ep("api.example.com", 443)), tlsWith(func(t *model.TLS) {
			t.ServerName = "api.example.com"
			t.SANs = []resource.SubjectAltName{
				{Type: resource.SANExact, Value: "spiffe://example.com/ns/prod/sa/api"},
				{Type: resource.SANExact, Value: "10.0.0.7"},
				{Type: resource.SANExact, Value: "api.example.com"},
				{Type: resource.SANPrefix, Value: "api-"},
			}
		})))
	}},
	{name: "tls-per-endpoint-sni-no-servername", world: func() *model.World {
		return world(withTLS(svc("multi", "http", 443, ep("a.example.com", 443), ep("b.example.net", 443), ep("10.0.0.8", 443)), tlsSecured()))
	}},
	{name: "tls-client-cert-mtls", world: func() *model.World {
		return world(withTLS(svc("mtls", "tcp", 4244, ep("tcpbin.com", 4244)), tlsWith(func(t *model.TLS) {
			t.ServerName = "tcpbin.com"
			t.ClientCert, t.ClientKey, t.ClientCertSource = fakeClientCert, fakeClientKey, "secret:client"
		})))
	}},
	{name: "tls-secrets-via-file", opts: Options{SecretsVia: SecretsFile, SecretsDir: "/var/run/meshext/secrets"}, world: func() *model.World {
		return world(withTLS(svc("mtls", "http", 443, ep("api.example.com", 443)), tlsWith(func(t *model.TLS) {
			t.ClientCert, t.ClientKey = fakeClientCert, fakeClientKey
		})))
	}},
	{name: "tls-allow-renegotiation", world: func() *model.World {
		return world(withTLS(svc("legacy", "tcp", 443, ep("legacy.example.com", 443)), tlsWith(func(t *model.TLS) { t.AllowRenegotiation = true })))
	}},
	{name: "broken-service-skipped-only", world: func() *model.World {
		b := svc("broken", "http", 80, ep("x.example.com", 80))
		b.Broken = "caCert: secret \"missing\" not found"
		return world(b, svc("fine", "http", 81, ep("y.example.com", 80)))
	}},
	{name: "match-port-omitted-matches-every-port", world: func() *model.World {
		return world(svc("any-port", "tcp", 0, ep("10.0.0.4", 443)), svc("web", "http", 80, ep("web.example.com", 80)), svc("db", "tcp", 5432, ep("10.0.0.5", 5432)))
	}},
	{name: "empty-world-default-node", world: func() *model.World { return world() }},
	{name: "two-meshes-one-node-each", world: func() *model.World {
		a := svc("api", "http", 80, ep("api.example.com", 80))
		b := svc("api", "tcp", 5432, ep("10.0.0.3", 5432))
		b.Mesh = "payments"
		w := world(a, b)
		for _, m := range []string{"default", "payments"} {
			w.Dataplanes = append(w.Dataplanes, &resource.Dataplane{
				Meta: resource.Meta{Kind: resource.KindDataplane, Mesh: m, Name: "web"},
				Networking: resource.DataplaneNetworking{Address: "127.0.0.1", Outbound: []resource.Outbound{
					{Port: 7000, BackendRef: &resource.BackendRef{Kind: "MeshExternalService", Name: "api"}},
				}},
			})
		}
		return w
	}},
	{name: "dataplane-outbound-inbound-admin", world: func() *model.World {
		w := world(svc("mes-http", "http", 80, ep("httpbin.org", 80)), svc("mes-tcp", "tcp", 4242, ep("tcpbin.com", 4242)))
		w.Dataplanes = []*resource.Dataplane{{
			Meta: resource.Meta{Kind: resource.KindDataplane, Mesh: "default", Name: "web"},
			Networking: resource.DataplaneNetworking{
				Address: "127.0.0.1",
				Inbound: []resource.Inbound{{Port: 16379, ServicePort: 26379, ServiceAddress: "127.0.0.1"}},
				Outbound: []resource.Outbound{
					{Port: 8080, BackendRef: &resource.BackendRef{Kind: "MeshExternalService", Name: "mes-http"}},
					{Port: 8081, Address: "127.0.0.2", BackendRef: &resource.BackendRef{Kind: "MeshExternalService", Name: "mes-tcp"}},
					{Port: 8082, BackendRef: &resource.BackendRef{Kind: "MeshExternalService", Name: "missing"}},
				},
				TransparentProxying: &resource.TransparentProxying{RedirectPortOutbound: 15101},
				Admin:               &resource.Admin{Port: 9911},
			},
		}}
		return w
	}},
}

func TestGoldenCases(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			w := c.world()
			out := mustRender(t, w, c.opts)
			golden(t, filepath.Join("testdata", c.name+".golden.json"), snapshot(t, w, out))
		})
	}
}

// examplesDir is the repository's examples/ (the seed resources).
func examplesDir(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", "..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// buildExamples loads paths through resource.Load and model.Build, with the
// committed test CA as the system bundle so output does not depend on the host.
func buildExamples(t testing.TB, paths ...string) *model.World {
	t.Helper()
	set, problems, err := resource.Load(paths, resource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("load problem: %v", p)
	}
	w := model.Build(set, model.Options{SystemCAPath: systemCAPath})
	for _, p := range w.Problems {
		t.Errorf("build problem: %v", p)
	}
	return w
}

// TestGoldenSeedExamples renders each seed example on its own (with the
// hostname generator, default node) and all of them together (with the
// Dataplane, which makes one node "default.example").
func TestGoldenSeedExamples(t *testing.T) {
	dir := examplesDir(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "mes-") {
			continue
		}
		n++
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			w := buildExamples(t, filepath.Join(dir, name), filepath.Join(dir, "hostname-generator.yaml"))
			out := mustRender(t, w, Options{})
			golden(t, filepath.Join("testdata", "example-"+strings.TrimSuffix(name, ".yaml")+".golden.json"), snapshot(t, w, out))
		})
	}
	if n == 0 {
		t.Fatal("no mes-*.yaml examples found")
	}
	t.Run("all", func(t *testing.T) {
		w := buildExamples(t, dir)
		out := mustRender(t, w, Options{})
		if _, ok := out.Nodes["default.example"]; !ok {
			t.Fatalf("want node default.example from examples/dataplane.yaml, got %v", out.NodeIDs())
		}
		golden(t, filepath.Join("testdata", "example-all.golden.json"), snapshot(t, w, out))
	})
}

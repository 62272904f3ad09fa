package model

import (
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/e2e/testpki"
)

var update = flag.Bool("update", false, "rewrite golden files")

// noSystemCA makes the OS bundle probe find nothing and clears the override.
func noSystemCA(t *testing.T) {
	t.Helper()
	saved := SystemCABundles
	SystemCABundles = []string{filepath.Join(t.TempDir(), "no-such-bundle.pem")}
	t.Cleanup(func() { SystemCABundles = saved })
	t.Setenv(EnvSystemCAPath, "")
}

func loadPaths(t *testing.T, paths ...string) *resource.Set {
	t.Helper()
	set, errs, err := resource.Load(paths, resource.Options{})
	if err != nil || len(errs) > 0 {
		t.Fatalf("load %v: %v %v", paths, err, errs)
	}
	return set
}

// writeYAML writes docs to dir/name and returns the path.
func writeYAML(t *testing.T, dir, name, docs string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(docs), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func summary(w *World) string {
	var b strings.Builder
	for _, s := range w.Services {
		fmt.Fprintf(&b, "%s/%s vip=%s proto=%s port=%d hostnames=%v\n", s.Mesh, s.Name, s.VIP, s.Protocol, s.Port, s.Hostnames)
		for _, e := range s.Endpoints {
			fmt.Fprintf(&b, "  endpoint %s port=%d ip=%v unix=%v priority=%d\n", e.Address, e.Port, e.IsIP, e.Unix, e.Priority)
		}
		if t := s.TLS; t != nil {
			fmt.Fprintf(&b, "  tls mode=%s versions=%s..%s sni=%q sans=%v ca=%s client=%q renegotiation=%v\n",
				t.Mode, t.MinVersion, t.MaxVersion, t.ServerName, t.SANs, t.CASource, t.ClientCertSource, t.AllowRenegotiation)
		}
		for _, c := range s.Conditions {
			fmt.Fprintf(&b, "  condition %s=%s reason=%s generator=%s message=%q\n", c.Type, c.Status, c.Reason, c.Generator, c.Message)
		}
		if s.Broken != "" {
			fmt.Fprintf(&b, "  broken: %s\n", s.Broken)
		}
	}
	for _, p := range w.Problems {
		fmt.Fprintf(&b, "problem: %s\n", p)
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create)", err)
	}
	if got != string(want) {
		t.Fatalf("output differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestBuildExamples(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	noSystemCA(t)
	bundle := writeYAML(t, t.TempDir(), "bundle.pem", "") // existence is what counts here
	set := loadPaths(t, "../../examples")
	w := Build(set, Options{SystemCAPath: bundle})
	if len(w.Services) != 7 {
		t.Fatalf("%d services, want 7", len(w.Services))
	}
	if len(w.Problems) != 0 {
		t.Fatalf("problems: %v", w.Problems)
	}
	if s := w.Service("default", "mes-tcp"); s == nil || fmt.Sprint(s.Hostnames) != "[mes-tcp.svc.meshext.local]" || s.TLS != nil {
		t.Fatalf("mes-tcp: %+v", s)
	}
	if s := w.Service("default", "mes-tcp-mtls"); s.TLS == nil || s.TLS.ClientCert == nil || s.TLS.ClientCertSource != "inline" {
		t.Fatalf("mes-tcp-mtls TLS: %+v", s.TLS)
	}
	if len(w.Dataplanes) != 1 || w.Dataplanes[0].Name != "example" {
		t.Fatalf("dataplanes: %v", w.Dataplanes)
	}
	got := strings.ReplaceAll(summary(w), bundle, "BUNDLE")
	golden(t, "examples.golden", got)

	// Deterministic: a second build from a fresh load is identical.
	again := strings.ReplaceAll(summary(Build(loadPaths(t, "../../examples"), Options{SystemCAPath: bundle})), bundle, "BUNDLE")
	if again != got {
		t.Fatalf("second build differs:\n%s\nvs\n%s", again, got)
	}
}

type pki struct {
	caB64, caPEM, certB64, keyB64 string
}

func newPKI(t *testing.T) pki {
	t.Helper()
	ca, err := testpki.NewCA(testpki.CommonName("test CA"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.CommonName("client"), testpki.ClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString
	return pki{caB64: enc(ca.CertPEM), caPEM: string(ca.CertPEM), certB64: enc(leaf.CertPEM), keyB64: enc(leaf.KeyPEM)}
}

func mes(name, tls string) string {
	return fmt.Sprintf(`---
type: MeshExternalService
name: %s
mesh: default
spec:
  match: {port: 443, protocol: http}
  endpoints:
  - {address: %s.example.com, port: 443}
%s`, name, name, tls)
}

func secret(name, dataB64 string) string {
	return fmt.Sprintf("---\ntype: Secret\nname: %s\nmesh: default\ndata: %s\n", name, dataB64)
}

func TestMissingSecretIsolatesOneService(t *testing.T) {
	noSystemCA(t)
	p := newPKI(t)
	dir := t.TempDir()
	file := writeYAML(t, dir, "mes.yaml",
		secret("ca", p.caB64)+
			mes("good-secret", "  tls:\n    enabled: true\n    verification:\n      caCert: {secret: ca}\n")+
			mes("missing", "  tls:\n    enabled: true\n    verification:\n      caCert: {secret: nope}\n")+
			mes("plain", ""))
	w := Build(loadPaths(t, file), Options{})
	missing := w.Service("default", "missing")
	wantMsg := file + `:29: MeshExternalService default/missing: spec.tls.verification.caCert.secret: could not load caCert: Secret "nope" not found in mesh "default"`
	if missing.Broken != wantMsg {
		t.Fatalf("broken:\n got %q\nwant %q", missing.Broken, wantMsg)
	}
	if len(w.Problems) != 1 || w.Problems[0].Error() != wantMsg {
		t.Fatalf("problems: %v", w.Problems)
	}
	if c := find(missing, ConditionTLSReady); c == nil || c.Status != StatusFalse || c.Reason != ReasonSecretNotFound {
		t.Fatalf("TLSReady: %+v", c)
	}
	if c := find(missing, ConditionReady); c == nil || c.Status != StatusFalse {
		t.Fatalf("Ready: %+v", c)
	}
	good := w.Service("default", "good-secret")
	if good.Broken != "" || good.TLS == nil || good.TLS.CASource != "secret:ca" || string(good.TLS.CA) != p.caPEM {
		t.Fatalf("good-secret: broken=%q tls=%+v", good.Broken, good.TLS)
	}
	if plain := w.Service("default", "plain"); plain.Broken != "" || plain.TLS != nil || !plain.VIP.IsValid() {
		t.Fatalf("plain: %+v", plain)
	}
	if missing.VIP.IsValid() == false {
		t.Fatalf("a broken service still gets its VIP (its DNS name must stay stable)")
	}
}

func find(s *Service, typ string) *Condition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == typ {
			return &s.Conditions[i]
		}
	}
	return nil
}

func TestTLSResolution(t *testing.T) {
	p := newPKI(t)
	bundleDir := t.TempDir()
	bundle := writeYAML(t, bundleDir, "bundle.pem", p.caPEM)
	indent := func(s string) string { return strings.ReplaceAll(s, "\n", "\n          ") }
	cases := []struct {
		name       string
		tls        string
		sysPath    string // Options.SystemCAPath
		env        string // $KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH
		wantBroken string // substring; "" = must not be broken
		wantReason string
		check      func(t *testing.T, tl *TLS)
	}{
		{name: "disabled", tls: "  tls: {enabled: false, verification: {caCert: {secret: nope}}}\n",
			check: func(t *testing.T, tl *TLS) {
				if tl != nil {
					t.Fatalf("TLS %+v, want nil", tl)
				}
			}},
		{name: "F1 secured without any CA fails closed", tls: "  tls: {enabled: true}\n",
			wantBroken: "mode Secured needs trust anchors but the service has no caCert and no OS CA bundle found", wantReason: ReasonNoTrustAnchors},
		{name: "F1 SkipSAN without CA fails closed", tls: "  tls: {enabled: true, verification: {mode: SkipSAN}}\n",
			wantBroken: "failing closed", wantReason: ReasonNoTrustAnchors},
		{name: "SkipCA needs no CA", tls: "  tls: {enabled: true, verification: {mode: SkipCA}}\n",
			check: func(t *testing.T, tl *TLS) {
				if tl.CASource != "" || tl.Mode != "SkipCA" {
					t.Fatalf("%+v", tl)
				}
			}},
		{name: "SkipAll ignores the system bundle", tls: "  tls: {enabled: true, verification: {mode: SkipAll}}\n", sysPath: bundle,
			check: func(t *testing.T, tl *TLS) {
				if tl.CASource != "" || tl.SystemCAPath != "" {
					t.Fatalf("%+v", tl)
				}
			}},
		{name: "explicit system path", tls: "  tls: {enabled: true}\n", sysPath: bundle,
			check: func(t *testing.T, tl *TLS) {
				if tl.CASource != "system:"+bundle || tl.SystemCAPath != bundle || tl.CA != nil {
					t.Fatalf("%+v", tl)
				}
			}},
		{name: "env system path", tls: "  tls: {enabled: true}\n", env: bundle,
			check: func(t *testing.T, tl *TLS) {
				if tl.CASource != "system:"+bundle {
					t.Fatalf("%+v", tl)
				}
			}},
		{name: "explicit path missing fails closed", tls: "  tls: {enabled: true}\n", sysPath: "/nonexistent/ca.pem",
			wantBroken: `system CA bundle "/nonexistent/ca.pem" (configured system CA path) is unusable`, wantReason: ReasonNoTrustAnchors},
		{name: "explicit path to a device fails closed", tls: "  tls: {enabled: true}\n", sysPath: "/dev/zero",
			wantBroken: `system CA bundle "/dev/zero" (configured system CA path) is a character device, not a PEM file`, wantReason: ReasonNoTrustAnchors},
		{name: "inline CA beats system", tls: "  tls: {enabled: true, verification: {caCert: {inline: " + p.caB64 + "}}}\n", sysPath: bundle,
			check: func(t *testing.T, tl *TLS) {
				if tl.CASource != "inline" || string(tl.CA) != p.caPEM || tl.SystemCAPath != "" {
					t.Fatalf("%+v", tl)
				}
			}},
		{name: "inlineString CA", tls: "  tls:\n    enabled: true\n    verification:\n      caCert:\n        inlineString: |\n          " + indent(p.caPEM) + "\n",
			check: func(t *testing.T, tl *TLS) {
				if tl.CASource != "inline" || !strings.Contains(string(tl.CA), "BEGIN CERTIFICATE") {
					t.Fatalf("%+v", tl)
				}
			}},
		{name: "CA not PEM", tls: "  tls: {enabled: true, verification: {caCert: {inlineString: hello}}}\n",
			wantBroken: "spec.tls.verification.caCert: could not load caCert: no PEM certificate found", wantReason: ReasonInvalidData},
		{name: "client cert and key", tls: "  tls: {enabled: true, verification: {caCert: {inline: " + p.caB64 + "}, clientCert: {inline: " + p.certB64 + "}, clientKey: {inline: " + p.keyB64 + "}}}\n",
			check: func(t *testing.T, tl *TLS) {
				if tl.ClientCert == nil || tl.ClientKey == nil || tl.ClientCertSource != "inline" {
					t.Fatalf("%+v", tl)
				}
			}},
		{name: "key does not match cert", tls: "  tls: {enabled: true, verification: {caCert: {inline: " + p.caB64 + "}, clientCert: {inline: " + p.caB64 + "}, clientKey: {inline: " + p.keyB64 + "}}}\n",
			wantBroken: "clientCert and clientKey are not a usable PEM certificate and matching key", wantReason: ReasonInvalidData},
		{name: "versions, SANs, serverName", tls: "  tls: {enabled: true, allowRenegotiation: true, version: {min: TLS12, max: TLS13}, verification: {serverName: api.example.com, subjectAltNames: [{value: spiffe://x/y}, {type: Prefix, value: api}]}}\n", sysPath: bundle,
			check: func(t *testing.T, tl *TLS) {
				if tl.MinVersion != "TLS12" || tl.MaxVersion != "TLS13" || !tl.AllowRenegotiation || tl.ServerName != "api.example.com" ||
					fmt.Sprint(tl.SANs) != "[{Exact spiffe://x/y} {Prefix api}]" {
					t.Fatalf("%+v", tl)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			noSystemCA(t)
			if c.env != "" {
				t.Setenv(EnvSystemCAPath, c.env)
			}
			file := writeYAML(t, t.TempDir(), "mes.yaml", mes("svc", c.tls))
			w := Build(loadPaths(t, file), Options{SystemCAPath: c.sysPath})
			s := w.Service("default", "svc")
			if c.wantBroken != "" {
				if !strings.Contains(s.Broken, c.wantBroken) {
					t.Fatalf("broken %q, want it to contain %q", s.Broken, c.wantBroken)
				}
				if cond := find(s, ConditionTLSReady); cond == nil || cond.Reason != c.wantReason || cond.Status != StatusFalse {
					t.Fatalf("TLSReady %+v, want reason %s", cond, c.wantReason)
				}
				if s.TLS != nil {
					t.Fatalf("a broken service must carry no TLS plan")
				}
				return
			}
			if s.Broken != "" || len(w.Problems) > 0 {
				t.Fatalf("broken %q problems %v", s.Broken, w.Problems)
			}
			c.check(t, s.TLS)
		})
	}
}

func TestEndpoints(t *testing.T) {
	file := writeYAML(t, t.TempDir(), "mes.yaml", `
type: MeshExternalService
name: multi
mesh: default
spec:
  match: {port: 80}
  endpoints:
  - {address: 10.0.0.7, port: 8080}
  - {address: "2001:db8::1", port: 8081, priority: 1}
  - {address: api.example.com, port: 80, priority: 2}
  - {address: "unix:///run/app.sock"}
`)
	s := Build(loadPaths(t, file), Options{}).Service("default", "multi")
	want := []Endpoint{
		{Address: "10.0.0.7", Port: 8080, IsIP: true},
		{Address: "2001:db8::1", Port: 8081, IsIP: true, Priority: 1},
		{Address: "api.example.com", Port: 80, Priority: 2},
		{Address: "/run/app.sock", Unix: true},
	}
	if fmt.Sprint(s.Endpoints) != fmt.Sprint(want) {
		t.Fatalf("endpoints %+v, want %+v", s.Endpoints, want)
	}
}

// With a state directory, VIPs survive a restart and a new file, and a new
// service without a creation time does not take an existing service's
// hostname even when its name sorts first.
func TestStateDirStabilityAndAge(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	state, dir := t.TempDir(), t.TempDir()
	gen := `
type: HostnameGenerator
name: by-label
spec:
  selector: {meshExternalService: {matchLabels: {kuma.io/origin: zone}}}
  template: '{{ label "app" }}.svc.local'
`
	svc := func(name string) string {
		return fmt.Sprintf("type: MeshExternalService\nname: %s\nmesh: default\nlabels: {app: shop}\nspec: {match: {port: 80}, endpoints: [{address: 1.2.3.4, port: 80}]}\n", name)
	}
	writeYAML(t, dir, "gen.yaml", gen)
	writeYAML(t, dir, "zz-first.yaml", svc("zz-first"))
	build := func() *World {
		a, err := ipam.Open(state, "")
		if err != nil {
			t.Fatal(err)
		}
		return Build(loadPaths(t, dir), Options{IPAM: a})
	}
	w1 := build()
	first := w1.Service("default", "zz-first")
	if fmt.Sprint(first.Hostnames) != "[shop.svc.local]" {
		t.Fatalf("zz-first hostnames %v", first.Hostnames)
	}
	writeYAML(t, dir, "aa-second.yaml", svc("aa-second"))
	w2 := build()
	first2, second := w2.Service("default", "zz-first"), w2.Service("default", "aa-second")
	if first2.VIP != first.VIP || fmt.Sprint(first2.Hostnames) != "[shop.svc.local]" {
		t.Fatalf("zz-first changed: vip %s->%s hostnames %v", first.VIP, first2.VIP, first2.Hostnames)
	}
	c := find(second, ConditionGenerated)
	if len(second.Hostnames) != 0 || c == nil || c.Reason != "Collision" || !strings.Contains(c.Message, "MeshExternalService: zz-first ") {
		t.Fatalf("aa-second: hostnames %v condition %+v", second.Hostnames, c)
	}
	// Collisions are problems too, on the losing service.
	if len(w2.Problems) != 1 || !strings.Contains(w2.Problems[0].Error(), "MeshExternalService default/aa-second: name: HostnameGenerator by-label: Hostname \"shop.svc.local\" collision") {
		t.Fatalf("problems %v", w2.Problems)
	}
	// An explicit creation time older than zz-first's first sighting does win.
	writeYAML(t, dir, "aa-second.yaml", strings.Replace(svc("aa-second"), "mesh: default\n", "mesh: default\ncreationTime: \"2001-01-01T00:00:00Z\"\n", 1))
	w3 := build()
	if fmt.Sprint(w3.Service("default", "aa-second").Hostnames) != "[shop.svc.local]" || w3.Service("default", "aa-second").VIP != second.VIP {
		t.Fatalf("explicit creation time should win: %v", w3.Service("default", "aa-second").Hostnames)
	}
}

func TestVIPExhaustionAndCIDRChange(t *testing.T) {
	state, dir := t.TempDir(), t.TempDir()
	for _, n := range []string{"a", "b"} {
		writeYAML(t, dir, n+".yaml", fmt.Sprintf("type: MeshExternalService\nname: %s\nmesh: default\nspec: {match: {port: 80}, endpoints: [{address: 1.2.3.4, port: 80}]}\n", n))
	}
	a, err := ipam.Open(state, "10.1.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	Build(loadPaths(t, dir), Options{IPAM: a})

	// Move to a /31 holding 10.1.0.0-1: b (10.1.0.2) must move, a stays; a third
	// service no longer fits.
	writeYAML(t, dir, "c.yaml", "type: MeshExternalService\nname: c\nmesh: default\nspec: {match: {port: 80}, endpoints: [{address: 1.2.3.4, port: 80}]}\n")
	small, err := ipam.Open(state, "10.1.0.0/31")
	if err != nil {
		t.Fatal(err)
	}
	w := Build(loadPaths(t, dir), Options{IPAM: small})
	sa, sb, sc := w.Service("default", "a"), w.Service("default", "b"), w.Service("default", "c")
	if sa.VIP.String() != "10.1.0.1" || find(sa, ConditionVIPAllocated).Reason != "Allocated" {
		t.Fatalf("a: %s %+v", sa.VIP, sa.Conditions)
	}
	if c := find(sb, ConditionVIPAllocated); sb.VIP.String() != "10.1.0.0" || c.Reason != "Reallocated" || !strings.Contains(c.Message, "VIP moved from 10.1.0.2 to 10.1.0.0") {
		t.Fatalf("b: %s %+v", sb.VIP, c)
	}
	if c := find(sc, ConditionVIPAllocated); sc.VIP.IsValid() || c.Status != StatusFalse || !strings.Contains(sc.Broken, "MeshExternalServiceCIDR 10.1.0.0/31 is exhausted") {
		t.Fatalf("c: vip %s broken %q cond %+v", sc.VIP, sc.Broken, c)
	}
	if sa.Broken != "" || sb.Broken != "" {
		t.Fatalf("exhaustion must only break the service without a VIP")
	}
}

// A resource that fails validation is left out and reported; the others build.
func TestValidationProblemsAreIsolated(t *testing.T) {
	file := writeYAML(t, t.TempDir(), "mes.yaml", mes("ok", "")+`---
type: MeshExternalService
name: bad-port
mesh: default
spec:
  match: {port: 70000}
  endpoints: [{address: x.example.com, port: 80}]
`)
	w := Build(loadPaths(t, file), Options{})
	if w.Service("default", "bad-port") != nil || w.Service("default", "ok") == nil || w.Service("default", "ok").Broken != "" {
		t.Fatalf("services: %v", summary(w))
	}
	if len(w.Problems) != 1 || !strings.Contains(w.Problems[0].Error(), "mes.yaml:14: MeshExternalService default/bad-port: spec.match.port:") {
		t.Fatalf("problems: %v", w.Problems)
	}
}

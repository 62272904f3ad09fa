package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
	"github.com/meshext/meshext/e2e/testpki"
)

func runRenderTest(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = renderMain(args, &out, &errb)
	return out.String(), errb.String(), code
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func envoyValidateFile(t *testing.T, path string) {
	t.Helper()
	if out, err := envoyproc.Validate(testenv.Envoy(t), path); err != nil {
		t.Fatalf("envoy --mode validate %s: %v\n%s", path, err, out)
	}
}

func TestRenderExamplesWritesValidConfig(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	dir := t.TempDir()
	stdout, stderr, code := runRenderTest(t, examplesDir, "--out", dir, "--system-ca-path", inspectCA)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	// Secrets: the four system-CA services share one bundle secret, plus the mTLS client cert.
	if !strings.Contains(stdout, "node default.example: 9 clusters, 3 listeners, 2 secrets") {
		t.Errorf("summary:\n%s", stdout)
	}
	node := filepath.Join(dir, "default.example")
	for name, mode := range map[string]os.FileMode{"bootstrap.json": 0o600, "cds.json": 0o644, "lds.json": 0o644} {
		if got := fileMode(t, filepath.Join(node, name)); got != mode {
			t.Errorf("%s mode %v, want %v", name, got, mode)
		}
	}
	secrets, err := filepath.Glob(filepath.Join(dir, "sds", "*.json"))
	if err != nil || len(secrets) != 2 {
		t.Fatalf("secrets %v (%v), want 2 files", secrets, err)
	}
	for _, s := range secrets {
		if m := fileMode(t, s); m != 0o600 {
			t.Errorf("%s mode %v, want 0600", s, m)
		}
	}
	// The client key of mes-tcp-mtls is only in its secret file and the static
	// bootstrap, never in cds.json.
	cds, _ := os.ReadFile(filepath.Join(node, "cds.json"))
	if bytes.Contains(cds, []byte("PRIVATE KEY")) || bytes.Contains(cds, []byte("inlineBytes")) {
		t.Error("cds.json carries secret material; it must reference SDS")
	}
	if bytes.Contains([]byte(stdout+stderr), []byte("PRIVATE KEY")) {
		t.Error("secret material printed")
	}
	envoyValidateFile(t, filepath.Join(node, "bootstrap.json"))
}

func TestRenderBrokenServiceIsReportedAndSkipped(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	in := filepath.Join(t.TempDir(), "world.yaml")
	writeYAML(t, in, `type: MeshExternalService
name: bad
mesh: default
spec:
  match: {type: HostnameGenerator, port: 443, protocol: tcp}
  endpoints: [{address: api.example.com, port: 443}]
  tls:
    enabled: true
    verification:
      caCert: {secret: missing-ca}
---
type: MeshExternalService
name: good
mesh: default
spec:
  match: {type: HostnameGenerator, port: 80, protocol: http}
  endpoints: [{address: 10.0.0.1, port: 80}]
`)
	dir := t.TempDir()
	_, stderr, code := runRenderTest(t, "--out", dir, in)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "not rendered: MeshExternalService default/bad") || !strings.Contains(stderr, "missing-ca") {
		t.Errorf("stderr does not explain the broken service:\n%s", stderr)
	}
	cds, err := os.ReadFile(filepath.Join(dir, "default", "cds.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(cds, []byte(`"default_good__default_extsvc_80"`)) || bytes.Contains(cds, []byte("default_bad_")) {
		t.Errorf("cds.json should hold good and not bad:\n%s", cds)
	}
}

func TestRenderUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{examplesDir},
		{"--out", t.TempDir()},
		{examplesDir, "--out", t.TempDir(), "--upstream-dns", "not-an-address"},
		{"--bogus"},
	} {
		if _, _, code := runRenderTest(t, args...); code != 2 {
			t.Errorf("args %q: exit %d, want 2", args, code)
		}
	}
	if out, _, code := runRenderTest(t, "--help"); code != 0 {
		t.Errorf("--help exit %d: %s", code, out)
	}
}

func writeYAML(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRenderedFilesFeedEnvoyThroughFileBootstrap is the whole file path:
// `meshext render` output plus `meshext bootstrap --xds file` start a real
// Envoy, which loads the clusters, listeners and SDS secrets from the files.
func TestRenderedFilesFeedEnvoyThroughFileBootstrap(t *testing.T) {
	envoy := testenv.Envoy(t)
	t.Setenv(ipam.EnvCIDR, "")
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(testpki.CommonName("meshext-client"), testpki.ClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	admin, outbound, redirect := testnet.FreePort(t), testnet.FreePort(t), testnet.FreePort(t)
	in := t.TempDir()
	writeYAML(t, filepath.Join(in, "world.yaml"), fmt.Sprintf(`type: Secret
name: client-key
mesh: default
data: %s
---
type: MeshExternalService
name: api
mesh: default
spec:
  match: {type: HostnameGenerator, port: 443, protocol: http}
  endpoints: [{address: 127.0.0.1, port: 8443}]
  tls:
    enabled: true
    verification:
      serverName: api.test
      caCert: {inlineString: %q}
      clientCert: {inlineString: %q}
      clientKey: {secret: client-key}
---
type: Dataplane
mesh: default
name: web
networking:
  address: 127.0.0.1
  outbound:
  - port: %d
    backendRef: {kind: MeshExternalService, name: api}
  transparentProxying: {redirectPortOutbound: %d}
  admin: {port: %d}
`, b64(client.KeyPEM), string(ca.CertPEM), string(client.CertPEM), outbound, redirect, admin))
	out := t.TempDir()
	if _, stderr, code := runRenderTest(t, in, "--out", out); code != 0 {
		t.Fatalf("render exit %d:\n%s", code, stderr)
	}
	boot := filepath.Join(t.TempDir(), "bootstrap.yaml")
	var bout, berr bytes.Buffer
	if code := bootstrapMain([]string{"--xds", "file", "--xds-dir", out, "--node", "default.web", "--admin-port", fmt.Sprint(admin), "--out", boot}, &bout, &berr); code != 0 {
		t.Fatalf("bootstrap exit %d: %s", code, berr.String())
	}

	e := envoyproc.StartT(t, envoyproc.Options{Bin: envoy, Config: boot})

	// Wait (bounded) until the cluster, its two SDS secrets and the listeners are active.
	const cluster = "default_api__default_extsvc_443"
	want := []string{`"` + cluster + `"`, `"` + names.CASecret(ca.CertPEM) + `"`, `"` + cluster + `_client"`, fmt.Sprintf(`"outbound:127.0.0.1:%d"`, outbound), `"outbound:transparent"`}
	var dump string
	deadline := time.Now().Add(30 * time.Second)
	for {
		dump = e.Text("/config_dump?include_eds")
		missing := ""
		for _, w := range want {
			if !strings.Contains(dump, w) {
				missing = w
			}
		}
		if missing == "" && strings.Contains(e.Text("/ready"), "LIVE") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s Envoy's config lacks %s", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// /clusters lists active clusters only: a cluster whose SDS secrets did not
	// load stays warming and is absent.
	if c := e.Text("/clusters"); !strings.Contains(c, cluster+"::127.0.0.1:8443::") {
		t.Errorf("cluster %s not active:\n%s", cluster, c)
	}
	if strings.Contains(dump, "PRIVATE KEY") {
		t.Error("config_dump shows the private key")
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestRenderOutputDirectoryIsOnlyPartlyOurs: `meshext render --out` refuses a
// non-empty directory it did not write, never replaces a file it did not
// write, and on a re-render removes only its own stale files.
func TestRenderOutputDirectoryIsOnlyPartlyOurs(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	in := t.TempDir()
	mes := "type: MeshExternalService\nname: api\nmesh: default\nspec: {match: {port: 80, protocol: http}, endpoints: [{address: 10.0.0.1, port: 80}]}\n"
	withDP := filepath.Join(in, "with-dp.yaml")
	writeYAML(t, withDP, mes+"---\ntype: Dataplane\nname: web\nmesh: default\nnetworking: {address: 127.0.0.1}\n")
	noDP := filepath.Join(in, "no-dp.yaml")
	writeYAML(t, noDP, mes)
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// Someone else's directory: refused, untouched.
	foreign := t.TempDir()
	writeYAML(t, filepath.Join(foreign, "notes.txt"), "keep me")
	_, stderr, code := runRenderTest(t, withDP, "--out", foreign)
	if code != 2 || !strings.Contains(stderr, "is not empty and has no .meshext-manifest.json") {
		t.Fatalf("foreign dir: exit %d, stderr:\n%s", code, stderr)
	}
	if ents, _ := os.ReadDir(foreign); len(ents) != 1 || read(filepath.Join(foreign, "notes.txt")) != "keep me" {
		t.Fatalf("foreign dir changed: %v", ents)
	}

	// Ours: a re-render removes our stale node and leaves the rest.
	out := t.TempDir()
	if _, stderr, code := runRenderTest(t, withDP, "--out", out); code != 0 {
		t.Fatalf("first render: exit %d:\n%s", code, stderr)
	}
	writeYAML(t, filepath.Join(out, "default.web", "mine.txt"), "mine")
	writeYAML(t, filepath.Join(out, "mine.json"), "mine")
	if _, stderr, code := runRenderTest(t, noDP, "--out", out); code != 0 {
		t.Fatalf("second render: exit %d:\n%s", code, stderr)
	}
	for _, gone := range []string{"bootstrap.json", "cds.json", "lds.json"} {
		if _, err := os.Stat(filepath.Join(out, "default.web", gone)); !os.IsNotExist(err) {
			t.Errorf("stale default.web/%s not removed: %v", gone, err)
		}
	}
	if read(filepath.Join(out, "default.web", "mine.txt")) != "mine" || read(filepath.Join(out, "mine.json")) != "mine" {
		t.Error("files meshext did not write were changed")
	}
	if !strings.Contains(read(filepath.Join(out, "default", "cds.json")), "10.0.0.1") {
		t.Error("the new node's files are missing")
	}

	// A file of someone else's where render would write: refused, untouched.
	writeYAML(t, filepath.Join(out, "default.web", "cds.json"), "theirs")
	_, stderr, code = runRenderTest(t, withDP, "--out", out)
	if code != 2 || !strings.Contains(stderr, "was not written by meshext") {
		t.Fatalf("occupied path: exit %d, stderr:\n%s", code, stderr)
	}
	if read(filepath.Join(out, "default.web", "cds.json")) != "theirs" {
		t.Error("someone else's cds.json was replaced")
	}
}

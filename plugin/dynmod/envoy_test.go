package dynmod_test

import (
	"context"
	"crypto/tls"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
	"github.com/meshext/meshext/e2e/testpki"
	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
	"github.com/meshext/meshext/plugin/envoytest"
)

// moduleDir is libmeshext.so built once for this test binary.
func moduleDir(t testing.TB) string { return envoytest.TestModuleDir(t) }

// TestMain removes the shared module build after all tests.
func TestMain(m *testing.M) {
	code := m.Run()
	envoytest.RemoveTestModule()
	os.Exit(code)
}

func filterConfig(t *testing.T, policies []core.Policy) []byte {
	t.Helper()
	svc := func(name, cluster, proto string, port uint32, vip string) core.Service {
		return core.Service{Name: name, Mesh: "default", Cluster: cluster, Protocol: proto, Port: port, VIP: vip,
			Hostnames: []string{name + ".extsvc.mesh.local"}}
	}
	fc := egress.FilterConfig{Config: core.Config{
		Source: core.Identity{Mesh: "default", Service: "web", Tags: map[string]string{"team": "a"}},
		Meshes: []core.Mesh{{Name: "default"}},
		Services: []core.Service{
			svc("httpbin", "mes_http", "http", 80, "242.0.0.1"),
			svc("secret", "mes_http", "http", 80, "242.0.0.2"),
			svc("shadow", "mes_http", "http", 80, ""),
			svc("grpc", "mes_grpc", "grpc", 9000, ""),
			svc("grpc-denied", "mes_grpc", "grpc", 9000, ""),
		},
		Policies: policies,
	}, TableKey: "meshext"}
	b, err := json.Marshal(fc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func deny(name, mes string) core.Policy {
	return core.Policy{Name: name, Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMeshExternalService, Name: mes},
		From: []core.From{{TargetRef: core.TargetRef{Kind: core.KindMeshService, Name: "web"}, Default: core.Conf{Action: core.Deny}}}}
}

var basePolicies = []core.Policy{
	deny("deny-secret", "secret"),
	deny("deny-grpc", "grpc-denied"),
	{Name: "shadow-all", Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMeshExternalService, Name: "shadow"},
		From: []core.From{{TargetRef: core.TargetRef{Kind: core.KindMesh}, Default: core.Conf{Action: core.AllowWithShadowDeny}}}},
}

func TestStockEnvoyDynamicModule(t *testing.T) {
	envoyBin := testenv.Envoy(t)
	mods := moduleDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// HTTP upstream: echoes what it saw so tests can tell it was reached.
	httpUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream path=%s host=%s cluster-header=%q", r.URL.Path, r.Host, r.Header.Get(egress.DefaultClusterHeader))
	}))
	defer httpUp.Close()

	// gRPC upstream (h2c): the standard health service.
	grpcAddr := testnet.GRPCHealthServer(t)

	logs := &testenv.SyncBuffer{}
	dir := t.TempDir()
	accessLog := filepath.Join(dir, "access.log")
	env, err := envoytest.Start(ctx, dir, envoytest.Options{
		Envoy:        envoyBin,
		ModuleDir:    mods,
		Flavor:       envoytest.DynamicModule,
		FilterConfig: filterConfig(t, basePolicies),
		Clusters: []envoytest.Cluster{
			{Name: "mes_http", Addr: strings.TrimPrefix(httpUp.URL, "http://")},
			{Name: "mes_grpc", Addr: grpcAddr, HTTP2: true},
		},
		Log:       logs,
		LogLevel:  "info",
		AccessLog: accessLog,
	})
	if err != nil {
		t.Fatalf("%v\nenvoy log:\n%s", err, logs.String())
	}
	defer env.Stop()
	defer func() {
		if t.Failed() {
			t.Logf("envoy log:\n%s", logs.String())
		}
	}()

	get := spoofingGet(t, ctx, env.Listener)

	t.Run("allowed", func(t *testing.T) {
		code, body := get("httpbin.extsvc.mesh.local", "/get")
		// The route drops the cluster header after routing: the external
		// service never sees it (nor the client's spoofed value).
		if code != 200 || !strings.Contains(body, "upstream path=/get") || !strings.Contains(body, `cluster-header=""`) {
			t.Fatalf("got %d %q", code, body)
		}
		// VIP literal with port reaches the same MES.
		if code, body := get("242.0.0.1:80", "/vip"); code != 200 || !strings.Contains(body, "path=/vip") {
			t.Fatalf("VIP: got %d %q", code, body)
		}
	})
	t.Run("denied", func(t *testing.T) {
		code, body := get("secret.extsvc.mesh.local", "/get")
		if code != 403 || !strings.Contains(body, `"secret"`) || !strings.Contains(body, `"deny-secret"`) {
			t.Fatalf("got %d %q", code, body)
		}
	})
	t.Run("unknown host", func(t *testing.T) {
		code, body := get("nothing.example.com", "/")
		if code != 404 || !strings.Contains(body, "no MeshExternalService matches host") {
			t.Fatalf("got %d %q", code, body)
		}
	})
	t.Run("shadow deny allows", func(t *testing.T) {
		if code, body := get("shadow.extsvc.mesh.local", "/s"); code != 200 || !strings.Contains(body, "path=/s") {
			t.Fatalf("got %d %q", code, body)
		}
	})
	t.Run("forward proxy", func(t *testing.T) {
		proxyURL, _ := url.Parse("http://" + env.Listener)
		pc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
		for _, target := range []string{"http://httpbin.extsvc.mesh.local/proxied", "http://HTTPBIN.extsvc.mesh.local.:80/proxied"} {
			resp, err := pc.Get(target)
			if err != nil {
				t.Fatalf("%s: %v", target, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), "path=/proxied") {
				t.Fatalf("%s: got %d %q", target, resp.StatusCode, b)
			}
		}
		resp, err := pc.Get("http://secret.extsvc.mesh.local/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("proxied denied MES: got %d", resp.StatusCode)
		}
	})
	t.Run("grpc", func(t *testing.T) {
		check := func(authority string) error {
			conn, err := grpc.NewClient(env.Listener, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
			if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("status %v", resp.GetStatus())
			}
			return err
		}
		if err := check("grpc.extsvc.mesh.local:9000"); err != nil {
			t.Fatalf("allowed gRPC: %v", err)
		}
		err := check("grpc-denied.extsvc.mesh.local:9000")
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "deny-grpc") {
			t.Fatalf("denied gRPC: want PermissionDenied naming deny-grpc, got %v", err)
		}
		if err := check("no-such.extsvc.mesh.local:9000"); status.Code(err) != codes.Unimplemented || !strings.Contains(status.Convert(err).Message(), "no MeshExternalService") {
			t.Fatalf("unknown host over gRPC: want Unimplemented, got %v", err)
		}
	})
	t.Run("counters and metadata", func(t *testing.T) {
		stats, err := env.Stats(ctx, "meshext_")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("filter counters:\n%s", stats)
		for _, name := range []string{egress.CounterAllowed, egress.CounterDenied, egress.CounterShadowDeny, egress.CounterUnknownHost} {
			if !hasPositiveStat(stats, name) {
				t.Errorf("counter %s missing or zero in:\n%s", name, stats)
			}
		}
		// Envoy flushes access-log lines independently: wait for every one.
		envoytest.WaitForFile(t, accessLog, "403 Deny secret deny-secret web",
			"200 Allow httpbin mesh-default -", "200 AllowWithShadowDeny shadow shadow-all -", "404 NotFound")
	})
	t.Run("policy change without restart", func(t *testing.T) {
		pidBefore := env.PID()
		if err := env.UpdateFilterConfig(ctx, filterConfig(t, append([]core.Policy{deny("deny-httpbin", "httpbin")}, basePolicies...))); err != nil {
			t.Fatal(err)
		}
		// The client's keep-alive connection was opened under the old
		// listener config; the shared table must still apply the new policy.
		code, body := get("httpbin.extsvc.mesh.local", "/get")
		if code != 403 || !strings.Contains(body, "deny-httpbin") {
			t.Fatalf("after update: got %d %q", code, body)
		}
		if env.PID() != pidBefore || !env.Alive() {
			t.Fatal("Envoy restarted or died during the update")
		}
		// A broken config is rejected and the previous one stays in force.
		if err := env.UpdateFilterConfig(ctx, []byte(`{"source":{}}`)); err == nil {
			t.Fatal("invalid filter config was accepted")
		}
		if code, _ := get("httpbin.extsvc.mesh.local", "/get"); code != 403 {
			t.Fatalf("after rejected update: got %d, want the previous config's 403", code)
		}
	})
	if !env.Alive() {
		t.Fatal("Envoy exited during the test")
	}
	if !regexp.MustCompile(`Dynamic module ABI version \S+ matched`).MatchString(logs.String()) {
		t.Error("Envoy did not log a matched dynamic module ABI version")
	}
}

// TestStockEnvoyRenderedDefault runs the config the controller renders on
// a forward-proxy listener (ignoreClientCertificates, denyMetadataOnly):
// allowed requests take plugin/dynabi's fast path (FastAllow and one call
// back into C), everything else the filter. The access log shows where
// each went: no decision metadata on plain allows, all of it on denials,
// shadow denials and unknown hosts.
func TestStockEnvoyRenderedDefault(t *testing.T) {
	envoyBin := testenv.Envoy(t)
	mods := moduleDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	httpUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream path=%s cluster-header=%q", r.URL.Path, r.Header.Get(egress.DefaultClusterHeader))
	}))
	defer httpUp.Close()
	lean := func(policies []core.Policy) []byte {
		var fc egress.FilterConfig
		if err := json.Unmarshal(filterConfig(t, policies), &fc); err != nil {
			t.Fatal(err)
		}
		fc.IgnoreClientCertificates, fc.DenyMetadataOnly = true, true
		b, err := json.Marshal(fc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	logs := &testenv.SyncBuffer{}
	dir := t.TempDir()
	accessLog := filepath.Join(dir, "access.log")
	env, err := envoytest.Start(ctx, dir, envoytest.Options{Envoy: envoyBin, ModuleDir: mods, Flavor: envoytest.DynamicModule,
		FilterConfig: lean(basePolicies),
		// The spoofed cluster exists: only the filter's header keeps requests off it.
		Clusters: []envoytest.Cluster{{Name: "mes_http", Addr: strings.TrimPrefix(httpUp.URL, "http://")}, {Name: "mes_grpc", Addr: "127.0.0.1:1"}},
		Log:      logs, AccessLog: accessLog})
	if err != nil {
		t.Fatalf("%v\nenvoy log:\n%s", err, logs.String())
	}
	defer env.Stop()
	get := spoofingGet(t, ctx, env.Listener)
	if code, body := get("HTTPBIN.extsvc.mesh.local:80", "/fast"); code != 200 || !strings.Contains(body, "path=/fast") || !strings.Contains(body, `cluster-header=""`) {
		t.Fatalf("allowed: got %d %q", code, body)
	}
	if code, body := get("secret.extsvc.mesh.local", "/"); code != 403 || !strings.Contains(body, "deny-secret") {
		t.Fatalf("denied: got %d %q", code, body)
	}
	if code, _ := get("shadow.extsvc.mesh.local", "/"); code != 200 {
		t.Fatalf("shadow deny: got %d", code)
	}
	if code, _ := get("nothing.example.com", "/"); code != 404 {
		t.Fatalf("unknown host: got %d", code)
	}
	stats, err := env.Stats(ctx, "meshext_")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{egress.CounterAllowed, egress.CounterDenied, egress.CounterShadowDeny, egress.CounterUnknownHost} {
		if !hasPositiveStat(stats, name) {
			t.Errorf("counter %s missing or zero in:\n%s", name, stats)
		}
	}
	envoytest.WaitForFile(t, accessLog, "200 - - - -", "403 Deny secret deny-secret web",
		"200 AllowWithShadowDeny shadow shadow-all -", "404 NotFound")
	// The fast path reads the live table: a new policy applies on the
	// same keep-alive connection.
	if err := env.UpdateFilterConfig(ctx, lean(append([]core.Policy{deny("deny-httpbin", "httpbin")}, basePolicies...))); err != nil {
		t.Fatal(err)
	}
	if code, body := get("httpbin.extsvc.mesh.local", "/"); code != 403 || !strings.Contains(body, "deny-httpbin") {
		t.Fatalf("after update: got %d %q", code, body)
	}
	if !env.Alive() {
		t.Fatalf("Envoy exited:\n%s", logs.String())
	}
}

// spoofingGet returns a GET through listener with the given Host that also
// names the mes_grpc cluster in the cluster header: a client must not be
// able to pick the cluster itself.
func spoofingGet(t *testing.T, ctx context.Context, listener string) func(host, path string) (int, string) {
	client := &http.Client{Timeout: 10 * time.Second}
	return func(host, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listener+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set(egress.DefaultClusterHeader, "mes_grpc")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s via Host %s: %v", path, host, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

func hasPositiveStat(stats, name string) bool {
	for _, line := range strings.Split(stats, "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && strings.HasSuffix(k, name) && strings.TrimSpace(v) != "0" {
			return true
		}
	}
	return false
}

// BenchmarkEnvoyRPS measures requests/s through a real Envoy with and
// without the filter, side by side (envoytest.CompareRPS), and reports
// both plus the overhead: Envoy on a CPU of its own, wrk as the client when
// installed, nine interleaved 1 s rounds. One iteration takes about 25 s.
func BenchmarkEnvoyRPS(b *testing.B) {
	envoyBin := testenv.Envoy(b)
	mods := moduleDir(b)
	wrk, _ := exec.LookPath("wrk") // a Go client when missing
	// The C reference (the filter's calls into Envoy, nothing else) is the
	// floor any implementation of the filter's behaviour pays.
	cref := ""
	if cc, err := exec.LookPath("cc"); err == nil {
		cref = b.TempDir()
		if _, err := envoytest.BuildCReference(context.Background(), cc, "", testenv.RepoRoot(), cref, true); err != nil {
			b.Fatal(err)
		}
	}
	var res *envoytest.CompareResult
	for b.Loop() {
		var err error
		res, err = envoytest.CompareRPS(context.Background(), b.TempDir(), envoytest.CompareOptions{Envoy: envoyBin, ModuleDir: mods,
			Pin: true, Wrk: wrk, Round: time.Second, Rounds: 9, CReferenceDir: cref})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(res.Baseline.RPS, "baseline-req/s")
	b.ReportMetric(res.Filter.RPS, "filter-req/s")
	b.ReportMetric(res.OverheadPct, "overhead-%")
	b.ReportMetric(res.MedianRatio, "median-filter/baseline")
	b.ReportMetric(float64(res.Baseline.CPUPerRequest.Nanoseconds()), "baseline-cpu-ns/req")
	b.ReportMetric(float64(res.Filter.CPUPerRequest.Nanoseconds()), "filter-cpu-ns/req")
	if res.CRef != nil {
		b.ReportMetric(res.CRefMedianRatio, "median-cref/baseline")
	}
}

// TestStockEnvoySPIFFEIdentity: on an mTLS listener the filter takes the
// source from the validated client certificate's SPIFFE URI SAN.
func TestStockEnvoySPIFFEIdentity(t *testing.T) {
	envoyBin := testenv.Envoy(t)
	mods := moduleDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "upstream") }))
	defer up.Close()

	dir := t.TempDir()
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(testpki.DNSNames("egress.local"), testpki.ServerAuth())
	if err != nil {
		t.Fatal(err)
	}
	m := &envoytest.MTLS{CertFile: filepath.Join(dir, "srv.pem"), KeyFile: filepath.Join(dir, "srv.key"), CAFile: filepath.Join(dir, "ca.pem")}
	if err := srv.WriteFiles(m.CertFile, m.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCertPEM(m.CAFile); err != nil {
		t.Fatal(err)
	}
	// "admins" is closed to everyone but the admin service; the listener
	// owner (web) is denied.
	fc := egress.FilterConfig{Config: core.Config{
		Source: core.Identity{Mesh: "default", Service: "web"},
		Services: []core.Service{{Name: "admins", Mesh: "default", Cluster: "mes_http", Protocol: "http", Port: 80,
			Hostnames: []string{"admins.extsvc.mesh.local"}}},
		Policies: []core.Policy{{Name: "admins-only", Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMeshExternalService, Name: "admins"},
			From: []core.From{
				{TargetRef: core.TargetRef{Kind: core.KindMesh}, Default: core.Conf{Action: core.Deny}},
				{TargetRef: core.TargetRef{Kind: core.KindMeshService, Name: "admin"}, Default: core.Conf{Action: core.Allow}},
			}}},
	}}
	raw, _ := json.Marshal(fc)
	logs := &testenv.SyncBuffer{}
	env, err := envoytest.Start(ctx, filepath.Join(dir, "envoy"), envoytest.Options{Envoy: envoyBin, ModuleDir: mods, Flavor: envoytest.DynamicModule,
		FilterConfig: raw, Clusters: []envoytest.Cluster{{Name: "mes_http", Addr: strings.TrimPrefix(up.URL, "http://")}}, MTLS: m, Log: logs})
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	defer env.Stop()
	get := func(uri string) (int, string) {
		t.Helper()
		leaf, err := ca.Issue(testpki.URIs(uri), testpki.ClientAuth())
		if err != nil {
			t.Fatal(err)
		}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: ca.Pool(), ServerName: "egress.local", Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12}}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+env.Listener+"/", nil)
		req.Host = "admins.extsvc.mesh.local"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v\n%s", uri, err, logs.String())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("spiffe://default/admin"); code != 200 || body != "upstream" {
		t.Fatalf("admin: got %d %q", code, body)
	}
	if code, body := get("spiffe://default/web"); code != 403 || !strings.Contains(body, `"admins-only"`) || !strings.Contains(body, `from "web"`) {
		t.Fatalf("web: got %d %q", code, body)
	}
	if code, body := get("spiffe://other/admin"); code != 403 || !strings.Contains(body, "another mesh") {
		t.Fatalf("other mesh: got %d %q", code, body)
	}
}

// TestModuleABIMatchesEnvoy: Envoy binds module callbacks lazily, so a
// callback the SDK imports but the running Envoy lacks would kill Envoy on
// first use. Check every one is exported (the ABI version handshake is
// asserted from Envoy's log in TestStockEnvoyDynamicModule).
func TestModuleABIMatchesEnvoy(t *testing.T) {
	envoyBin := testenv.Envoy(t)
	mods := moduleDir(t)
	imported := map[string]bool{}
	so, err := elf.Open(filepath.Join(mods, "libmeshext.so"))
	if err != nil {
		t.Fatal(err)
	}
	defer so.Close()
	syms, err := so.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	hooks := 0
	for _, s := range syms {
		switch {
		case s.Section == elf.SHN_UNDEF && strings.HasPrefix(s.Name, "envoy_dynamic_module_callback_"):
			imported[s.Name] = true
		case s.Section != elf.SHN_UNDEF && strings.HasPrefix(s.Name, "envoy_dynamic_module_on_"):
			hooks++
		}
	}
	if len(imported) == 0 || hooks == 0 {
		t.Fatalf("module imports %d callbacks, exports %d hooks: not a dynamic module?", len(imported), hooks)
	}
	bin, err := elf.Open(envoyBin)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	esyms, err := bin.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range esyms {
		if s.Section != elf.SHN_UNDEF {
			delete(imported, s.Name)
		}
	}
	if len(imported) > 0 {
		var missing []string
		for n := range imported {
			missing = append(missing, n)
		}
		t.Fatalf("Envoy %s lacks callbacks the module imports: %v", envoyBin, missing)
	}
}

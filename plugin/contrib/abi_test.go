package contrib_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
	"github.com/meshext/meshext/plugin/envoytest"
	"github.com/meshext/meshext/plugin/xdsfilter"
)

// golangLibrary is libmeshext-golang.so: $MESHEXT_GOLANG_LIBRARY (make test
// passes the one `make plugin-golang` built) or built from this checkout.
func golangLibrary(t *testing.T, ctx context.Context) string {
	t.Helper()
	if p := os.Getenv("MESHEXT_GOLANG_LIBRARY"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("MESHEXT_GOLANG_LIBRARY: %v", err)
		}
		return p
	}
	p, err := envoytest.BuildGolangLibrary(ctx, "", testenv.RepoRoot(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// buildHost compiles testdata/host/golang_host.c against the C headers of
// the pinned Envoy module's contrib Go filter.
func buildHost(t *testing.T, ctx context.Context, cc string) string {
	t.Helper()
	mod, err := envoytest.ModuleDir(ctx, "", testenv.RepoRoot(), envoytest.ContribSDK)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "golang_host")
	cmd := exec.CommandContext(ctx, cc, "-std=gnu11", "-O1", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror",
		"-I", filepath.Join(mod, "contrib", "golang", "common", "go", "api"),
		"-I", filepath.Join(mod, "contrib", "golang", "common", "dso"),
		// Export the callbacks so the library's imports resolve against the host.
		"-rdynamic", "-o", out, filepath.Join("testdata", "host", "golang_host.c"), "-ldl", "-lpthread")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the C host: %v\n%s", err, b)
	}
	return out
}

// pluginConfigHex is what Envoy hands envoyGoFilterNewHttpPluginConfig:
// Config.plugin_config, a serialized google.protobuf.Any.
func pluginConfigHex(t *testing.T, a *anypb.Any) string {
	t.Helper()
	b, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// renderedPluginConfig is the plugin_config of the contrib HTTP filter
// exactly as the controller renders it (plugin/xdsfilter.Golang).
func renderedPluginConfig(t *testing.T, cfg *egress.FilterConfig) *anypb.Any {
	t.Helper()
	f, err := xdsfilter.Golang(cfg, "/usr/local/lib/meshext/libmeshext-golang.so")
	if err != nil {
		t.Fatal(err)
	}
	var gc golangv3alpha.Config
	if err := f.GetTypedConfig().UnmarshalTo(&gc); err != nil {
		t.Fatal(err)
	}
	if gc.GetLibraryId() != egress.FilterName || gc.GetPluginName() != egress.FilterName {
		t.Fatalf("rendered golang filter: %+v", &gc)
	}
	return gc.GetPluginConfig()
}

// TestGolangLibraryThroughContribABI loads libmeshext-golang.so into a C host
// that plays Envoy 1.39's contrib Go HTTP filter (testdata/host/golang_host.c)
// and drives the library's exported entry points as that filter does: config
// parse, request headers (and body), the response, stream end. No contrib
// Envoy binary can be installed here; this proves the shipped library, its
// cgo main and the SDK's cgo layer answer through the real C ABI.
func TestGolangLibraryThroughContribABI(t *testing.T) {
	cc, err := exec.LookPath("cc")
	testenv.Require(t, err == nil, "a C compiler (cc) on PATH")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lib := golangLibrary(t, ctx)
	host := buildHost(t, ctx, cc)

	mes := func(name, protocol string, port uint32) core.Service {
		return core.Service{Name: name, Mesh: "default", Cluster: "meshext_default_" + name, Protocol: protocol,
			Hostnames: []string{name + ".svc.meshext.local"}, Port: port}
	}
	deny := func(name, target, from string, action core.Action) core.Policy {
		return core.Policy{Name: name, Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMeshExternalService, Name: target},
			From: []core.From{{TargetRef: core.TargetRef{Kind: core.KindMeshService, Name: from}, Default: core.Conf{Action: action}}}}
	}
	cfg := &egress.FilterConfig{Config: core.Config{
		Source:   core.Identity{Mesh: "default", Service: "web"},
		Services: []core.Service{mes("mes-http", "http", 80), mes("mes-https", "http", 80), mes("mes-grpc", "grpc", 9000)},
		Policies: []core.Policy{
			deny("deny-web-https", "mes-https", "web", core.Deny),
			deny("admin-https", "mes-https", "admin", core.Allow),
			deny("deny-web-grpc", "mes-grpc", "web", core.Deny),
		},
	}, TableKey: "abi-test"}
	good := pluginConfigHex(t, renderedPluginConfig(t, cfg))
	// A config the filter cannot load (no services): Envoy must refuse it.
	brokenJSON, _ := json.Marshal(map[string]any{"source": map[string]string{"mesh": "default", "service": "web"}, "bogus": true})
	broken, _ := anypb.New(wrapperspb.String(string(brokenJSON)))
	perRoute, _ := anypb.New(wrapperspb.String("{}"))

	script := strings.Join([]string{
		"config mesh " + good,
		"config broken " + pluginConfigHex(t, broken),
		"routeconfig route " + pluginConfigHex(t, perRoute),
		"merge routed mesh route",
		"request allowed mesh",
		"h :method GET", "h :scheme http", "h :path /get", "h :authority mes-http.svc.meshext.local",
		"h x-meshext-cluster spoofed", // a client's value never picks the cluster
		"send",
		"request denied mesh",
		"h :method GET", "h :scheme http", "h :path /get", "h :authority mes-https.svc.meshext.local",
		"send",
		"request denied-grpc mesh",
		"h :method POST", "h :scheme http", "h :path /grpc.health.v1.Health/Check",
		"h :authority mes-grpc.svc.meshext.local:9000", "h content-type application/grpc", "h te trailers",
		"body grpc-frame",
		"send",
		"request allowed-by-certificate mesh",
		"h :method GET", "h :scheme https", "h :path /get", "h :authority mes-https.svc.meshext.local",
		"peer spiffe://default/admin",
		"send",
		"request per-route-config routed",
		"h :method GET", "h :scheme http", "h :path /get", "h :authority mes-http.svc.meshext.local",
		"send",
		"request panic-grpc mesh",
		"h :method POST", "h :scheme http", "h :path /grpc.health.v1.Health/Check",
		"h :authority mes-grpc.svc.meshext.local:9000", "h content-type application/grpc",
		"fault getheader",
		"send",
	}, "\n") + "\n"

	cmd := exec.CommandContext(ctx, host, lib)
	cmd.Stdin = strings.NewReader(script)
	// As Dockerfile.envoy runs Envoy.
	cmd.Env = append(os.Environ(), "GODEBUG=cgocheck=0")
	b, err := cmd.CombinedOutput()
	out := string(b)
	// The transcript is the evidence: make test runs this test with -v.
	t.Logf("C host driving %s:\n%s", lib, out)
	if err != nil {
		t.Fatalf("host: %v", err)
	}

	decisions := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "DECISION "); ok {
			label, d, _ := strings.Cut(rest, ": ")
			decisions[label] = d
		}
	}
	denyBody := func(mes, policy string) string {
		return fmt.Sprintf(`meshext: access to MeshExternalService %q in mesh "default" from "web" denied by MeshTrafficPermission %q`, mes, policy)
	}
	want := map[string]string{
		"allowed": "allowed, upstream cluster meshext_default_mes-http, response 200",
		"denied": `local reply, HTTP 403 content-type="text/plain; charset=utf-8" body="` +
			denyBody("mes-https", "deny-web-https") + ` " (details meshext_egress_denied)`,
		"denied-grpc": `local reply, gRPC :status=200 grpc-status=7 grpc-message="` +
			denyBody("mes-grpc", "deny-web-grpc") + `%0A" (details meshext_egress_denied)`,
		"allowed-by-certificate": "allowed, upstream cluster meshext_default_mes-https, response 200",
		"broken":                 "config rejected (fails closed: no listener serves with it)",
		"per-route-config": `local reply, HTTP 500 content-type="text/plain; charset=utf-8" body="meshext: internal filter error " ` +
			`(details meshext_filter_error)`,
		"panic-grpc": `local reply, gRPC :status=200 grpc-status=13 grpc-message="meshext: internal filter error%0A" (details meshext_filter_error)`,
	}
	for label, w := range want {
		if got := decisions[label]; got != w {
			t.Errorf("decision %s:\n got %q\nwant %q", label, got, w)
		}
	}
	if len(decisions) != len(want) {
		t.Errorf("decisions %v, want exactly %d", decisions, len(want))
	}
	// What the filter told Envoy on the way (each a C callback).
	for _, s := range []string{
		"allowed: set header x-meshext-cluster: meshext_default_mes-http (set)",
		"allowed: clearRouteCache(refresh=0)",
		"allowed: router: cluster_header x-meshext-cluster -> meshext_default_mes-http (route re-picked after clearRouteCache)",
		`allowed: dynamic metadata meshext.action = "Allow"`,
		`denied: dynamic metadata meshext.policy = "deny-web-https"`,
		`allowed-by-certificate: dynamic metadata meshext.source = "admin"`,
		"per-route-config: sendLocalReply(500, grpc_status=13, details=meshext_filter_error) posted",
		"panic-grpc: envoyGoFilterHttpGetHeader(:authority) -> CAPIInvalidPhase (injected fault)",
		"config mesh: counter meshext_allowed = 2",
		"config mesh: counter meshext_denied = 2",
		"config mesh: counter meshext_errors = 1",
		"done: 6 requests",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("transcript lacks %q", s)
		}
	}
}

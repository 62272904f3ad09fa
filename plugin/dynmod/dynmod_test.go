package dynmod

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/envoyproxy/envoy/source/extensions/dynamic_modules/sdk/go/shared"

	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
)

// Fakes embed the SDK interfaces and override only what the adapter may
// call; anything else panics on the nil embedded value and fails the test.

func buf(s string) shared.UnsafeEnvoyBuffer {
	if s == "" {
		return shared.UnsafeEnvoyBuffer{}
	}
	return shared.UnsafeEnvoyBuffer{Ptr: unsafe.StringData(s), Len: uint64(len(s))}
}

type fakeConfigHandle struct {
	shared.HttpFilterConfigHandle
	counters []string
	logs     []string
}

func (h *fakeConfigHandle) Log(_ shared.LogLevel, format string, args ...any) {
	h.logs = append(h.logs, fmt.Sprintf(format, args...))
}

func (h *fakeConfigHandle) DefineCounter(name string, _ ...string) (shared.MetricID, shared.MetricsResult) {
	h.counters = append(h.counters, name)
	return shared.MetricID(len(h.counters) - 1), shared.MetricsSuccess
}

type fakeHeaders struct {
	shared.HeaderMap
	m        map[string]string
	panicGet bool   // every read panics
	panicKey string // reading this header panics
}

func (f *fakeHeaders) GetOne(k string) shared.UnsafeEnvoyBuffer {
	if f.panicGet || k == f.panicKey {
		panic("boom")
	}
	return buf(f.m[k])
}

func (f *fakeHeaders) Set(k, v string) { f.m[k] = v }

type reply struct {
	status  uint32
	headers [][2]string
	body    string
}

type fakeHandle struct {
	shared.HttpFilterHandle
	cfg        *fakeConfigHandle
	mtls       bool
	uriSAN     string
	meta       map[string]any
	replies    []reply
	rawHeaders [][2]string
	cleared    int
	counts     map[string]int
	logs       []string
}

func newHandle(cfg *fakeConfigHandle) *fakeHandle {
	return &fakeHandle{cfg: cfg, meta: map[string]any{}, counts: map[string]int{}}
}

func (h *fakeHandle) SetMetadata(ns, key string, v any) {
	if ns != egress.MetadataNamespace {
		panic("unexpected namespace " + ns)
	}
	h.meta[key] = v
}

func (h *fakeHandle) SendLocalResponse(status uint32, headers [][2]string, body []byte, _ string) {
	h.replies = append(h.replies, reply{status, headers, string(body)})
}

func (h *fakeHandle) SendResponseHeaders(headers [][2]string, end bool) {
	if !end {
		panic("gRPC deny must end the stream")
	}
	h.rawHeaders = headers
}

func (h *fakeHandle) ClearRouteCache() { h.cleared++ }

func (h *fakeHandle) IncrementCounterValue(id shared.MetricID, v uint64, _ ...string) shared.MetricsResult {
	h.counts[h.cfg.counters[id]] += int(v)
	return shared.MetricsSuccess
}

func (h *fakeHandle) GetAttributeBool(id shared.AttributeID) (bool, bool) {
	if id != shared.AttributeIDConnectionMtls {
		panic("unexpected attribute")
	}
	return h.mtls, true
}

func (h *fakeHandle) GetAttributeString(id shared.AttributeID) (shared.UnsafeEnvoyBuffer, bool) {
	if id != shared.AttributeIDConnectionUriSanPeerCertificate {
		panic("unexpected attribute")
	}
	return buf(h.uriSAN), h.uriSAN != ""
}

func (h *fakeHandle) Log(_ shared.LogLevel, format string, args ...any) {
	h.logs = append(h.logs, fmt.Sprintf(format, args...))
}

func testConfig(t testing.TB) []byte {
	t.Helper()
	mes := func(name string) core.Service {
		return core.Service{Name: name, Mesh: "default", Cluster: "mes_" + name, Protocol: "http", Port: 80, Hostnames: []string{name + ".ext"}}
	}
	policy := func(name, target string, a core.Action, from core.TargetRef) core.Policy {
		return core.Policy{Name: name, Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMeshExternalService, Name: target},
			From: []core.From{{TargetRef: from, Default: core.Conf{Action: a}}}}
	}
	b, err := json.Marshal(egress.FilterConfig{Config: core.Config{
		Source:   core.Identity{Mesh: "default", Service: "web"},
		Services: []core.Service{mes("open"), mes("closed"), mes("shadow"), mes("admins")},
		Policies: []core.Policy{
			policy("deny-closed", "closed", core.Deny, core.TargetRef{Kind: core.KindMesh}),
			policy("shadow", "shadow", core.AllowWithShadowDeny, core.TargetRef{Kind: core.KindMesh}),
			policy("admins-only", "admins", core.Deny, core.TargetRef{Kind: core.KindMesh}),
			policy("admins-allow", "admins", core.Allow, core.TargetRef{Kind: core.KindMeshService, Name: "admin"}),
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newFactory(t *testing.T) (*fakeConfigHandle, shared.HttpFilterFactory) {
	t.Helper()
	ch := &fakeConfigHandle{}
	f, err := ConfigFactory{}.Create(ch, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return ch, f
}

func run(t *testing.T, f shared.HttpFilterFactory, h *fakeHandle, hdrs map[string]string) (shared.HeadersStatus, *fakeHeaders) {
	t.Helper()
	fh := &fakeHeaders{m: hdrs}
	return f.Create(h).OnRequestHeaders(fh, true), fh
}

func TestAllowSetsClusterAndMetadata(t *testing.T) {
	ch, f := newFactory(t)
	h := newHandle(ch)
	st, hdrs := run(t, f, h, map[string]string{":authority": "Open.ext:80", egress.DefaultClusterHeader: "spoofed"})
	if st != shared.HeadersStatusContinue || len(h.replies) != 0 {
		t.Fatalf("status %v replies %v", st, h.replies)
	}
	if hdrs.m[egress.DefaultClusterHeader] != "mes_open" || h.cleared != 1 {
		t.Fatalf("cluster header %q, route cache cleared %d times", hdrs.m[egress.DefaultClusterHeader], h.cleared)
	}
	want := map[string]any{"action": "Allow", "mes": "open", "policy": "mesh-default"}
	for k, v := range want {
		if h.meta[k] != v {
			t.Errorf("metadata %s = %v, want %v", k, h.meta[k], v)
		}
	}
	if len(h.meta) != len(want) {
		t.Errorf("allowed request from the listener owner sets only %d metadata keys, got %v", len(want), h.meta)
	}
	if h.counts[egress.CounterAllowed] != 1 {
		t.Errorf("counters %v", h.counts)
	}
}

// newFactoryWith is newFactory on the test config changed by edit.
func newFactoryWith(t *testing.T, edit func(*egress.FilterConfig)) (*fakeConfigHandle, shared.HttpFilterFactory) {
	t.Helper()
	var fc egress.FilterConfig
	if err := json.Unmarshal(testConfig(t), &fc); err != nil {
		t.Fatal(err)
	}
	edit(&fc)
	raw, err := json.Marshal(fc)
	if err != nil {
		t.Fatal(err)
	}
	ch := &fakeConfigHandle{}
	f, err := ConfigFactory{}.Create(ch, raw)
	if err != nil {
		t.Fatal(err)
	}
	return ch, f
}

func TestDenyMetadataOnly(t *testing.T) {
	ch, f := newFactoryWith(t, func(fc *egress.FilterConfig) { fc.DenyMetadataOnly = true })
	h := newHandle(ch)
	if st, _ := run(t, f, h, map[string]string{":authority": "open.ext"}); st != shared.HeadersStatusContinue || len(h.meta) != 0 {
		t.Fatalf("allowed: status %v metadata %v", st, h.meta)
	}
	h = newHandle(ch)
	if st, _ := run(t, f, h, map[string]string{":authority": "closed.ext"}); st != shared.HeadersStatusStop || h.meta["action"] != "Deny" {
		t.Fatalf("denied: status %v metadata %v", st, h.meta)
	}
	// A shadow denial is allowed but recorded: the access log must say so.
	h = newHandle(ch)
	if st, _ := run(t, f, h, map[string]string{":authority": "shadow.ext"}); st != shared.HeadersStatusContinue || h.meta["action"] != "AllowWithShadowDeny" || h.meta["policy"] != "shadow" {
		t.Fatalf("shadow denial: status %v metadata %v", st, h.meta)
	}
}

func TestFastAllow(t *testing.T) {
	lean := func(fc *egress.FilterConfig) { fc.IgnoreClientCertificates, fc.DenyMetadataOnly = true, true }
	_, f := newFactoryWith(t, lean)
	fast := f.(FastDecider)
	a, ok := fast.FastAllow("Open.ext:80")
	if !ok || a.Header != egress.DefaultClusterHeader || a.Cluster != "mes_open" || !a.Count || a.Counter != 0 {
		t.Fatalf("allowed: %+v %v, want the cluster header and the allowed counter (id 0)", a, ok)
	}
	for _, host := range []string{"closed.ext", "shadow.ext", "nothing.ext", ""} {
		if a, ok := fast.FastAllow(host); ok {
			t.Errorf("%q decided on the fast path: %+v; the filter must handle it", host, a)
		}
	}
	if got := testing.AllocsPerRun(100, func() { fast.FastAllow("open.ext") }); got != 0 {
		t.Errorf("FastAllow allocates %v times per request", got)
	}
	_, fixed := newFactoryWith(t, func(fc *egress.FilterConfig) { lean(fc); fc.FixedCluster = true })
	if a, ok := fixed.(FastDecider).FastAllow("open.ext"); !ok || a.Header != "" || !a.Count {
		t.Fatalf("fixed cluster: %+v %v, want only the count", a, ok)
	}
	// Configs that read the certificate or record allows use the filter.
	for name, edit := range map[string]func(*egress.FilterConfig){
		"metadata on allows":  func(fc *egress.FilterConfig) { fc.IgnoreClientCertificates = true },
		"client certificates": func(fc *egress.FilterConfig) { fc.DenyMetadataOnly = true },
	} {
		_, f := newFactoryWith(t, edit)
		if a, ok := f.(FastDecider).FastAllow("open.ext"); ok {
			t.Errorf("%s: decided on the fast path: %+v", name, a)
		}
	}
}

func TestFixedClusterOnlyAuthorizes(t *testing.T) {
	ch, f := newFactoryWith(t, func(fc *egress.FilterConfig) { fc.FixedCluster = true })
	h := newHandle(ch)
	st, hdrs := run(t, f, h, map[string]string{":authority": "open.ext"})
	if st != shared.HeadersStatusContinue || h.cleared != 0 || hdrs.m[egress.DefaultClusterHeader] != "" {
		t.Fatalf("allowed: status %v, route cache cleared %d times, cluster header %q", st, h.cleared, hdrs.m[egress.DefaultClusterHeader])
	}
	if h.meta["action"] != "Allow" || h.counts[egress.CounterAllowed] != 1 {
		t.Fatalf("allowed: metadata %v counters %v", h.meta, h.counts)
	}
	h = newHandle(ch)
	if st, _ := run(t, f, h, map[string]string{":authority": "closed.ext"}); st != shared.HeadersStatusStop || len(h.replies) != 1 || h.replies[0].status != 403 {
		t.Fatalf("denied: status %v replies %v", st, h.replies)
	}
}

func TestDenyHTTPAndGRPC(t *testing.T) {
	ch, f := newFactory(t)
	h := newHandle(ch)
	st, hdrs := run(t, f, h, map[string]string{":authority": "closed.ext"})
	if st != shared.HeadersStatusStop || len(h.replies) != 1 || h.replies[0].status != 403 {
		t.Fatalf("status %v replies %+v", st, h.replies)
	}
	if !strings.Contains(h.replies[0].body, `"closed"`) || !strings.Contains(h.replies[0].body, `"deny-closed"`) {
		t.Fatalf("body %q", h.replies[0].body)
	}
	if _, set := hdrs.m[egress.DefaultClusterHeader]; set || h.meta["action"] != "Deny" || h.meta["source"] != "web" || h.meta["mesh"] != "default" || h.counts[egress.CounterDenied] != 1 {
		t.Fatalf("headers %v meta %v counts %v", hdrs.m, h.meta, h.counts)
	}

	g := newHandle(ch)
	st, _ = run(t, f, g, map[string]string{":authority": "closed.ext", "content-type": "application/grpc+proto"})
	if st != shared.HeadersStatusStop || len(g.replies) != 0 {
		t.Fatalf("gRPC deny must not use SendLocalResponse (Envoy 1.39 forces grpc-status 0): %+v", g.replies)
	}
	got := map[string]string{}
	for _, kv := range g.rawHeaders {
		got[kv[0]] = kv[1]
	}
	if got[":status"] != "200" || got["grpc-status"] != "7" || !strings.Contains(got["grpc-message"], "deny-closed") || strings.Contains(got["grpc-message"], "\n") {
		t.Fatalf("gRPC deny headers %v", got)
	}
}

func TestGRPCUnknownHost(t *testing.T) {
	ch, f := newFactory(t)
	h := newHandle(ch)
	if st, _ := run(t, f, h, map[string]string{":authority": "nowhere.example", "content-type": "application/grpc"}); st != shared.HeadersStatusStop || len(h.replies) != 0 {
		t.Fatalf("status %v replies %+v", st, h.replies)
	}
	if got := headerValue(h.rawHeaders, "grpc-status"); got != "12" {
		t.Fatalf("gRPC unknown host: grpc-status %q", got)
	}
}

func headerValue(hs [][2]string, k string) string {
	for _, kv := range hs {
		if kv[0] == k {
			return kv[1]
		}
	}
	return ""
}

func TestUnknownHost(t *testing.T) {
	ch, f := newFactory(t)
	h := newHandle(ch)
	st, _ := run(t, f, h, map[string]string{":authority": "nowhere.example"})
	if st != shared.HeadersStatusStop || len(h.replies) != 1 || h.replies[0].status != 404 || !strings.Contains(h.replies[0].body, "nowhere.example") {
		t.Fatalf("status %v replies %+v", st, h.replies)
	}
	if h.counts[egress.CounterUnknownHost] != 1 || h.meta["action"] != "NotFound" {
		t.Fatalf("counts %v meta %v", h.counts, h.meta)
	}
}

func TestShadowDenyAllowsAndLogs(t *testing.T) {
	ch, f := newFactory(t)
	h := newHandle(ch)
	st, _ := run(t, f, h, map[string]string{":authority": "shadow.ext"})
	if st != shared.HeadersStatusContinue || h.counts[egress.CounterShadowDeny] != 1 || h.counts[egress.CounterAllowed] != 1 {
		t.Fatalf("status %v counts %v", st, h.counts)
	}
	if len(h.logs) != 1 || !strings.Contains(h.logs[0], "shadow deny") {
		t.Fatalf("logs %v", h.logs)
	}
}

func TestSPIFFEIdentityFromClientCert(t *testing.T) {
	ch, f := newFactory(t)
	// Listener owner "web" is denied; a validated client cert for "admin" is allowed.
	h := newHandle(ch)
	if st, _ := run(t, f, h, map[string]string{":authority": "admins.ext"}); st != shared.HeadersStatusStop {
		t.Fatal("owner should be denied")
	}
	h = newHandle(ch)
	h.mtls, h.uriSAN = true, "spiffe://default/admin"
	if st, _ := run(t, f, h, map[string]string{":authority": "admins.ext"}); st != shared.HeadersStatusContinue || h.meta["source"] != "admin" || h.meta["policy"] != "admins-allow" {
		t.Fatalf("status %v meta %v", st, h.meta)
	}
	// Without mTLS the SAN attribute is not trusted.
	h = newHandle(ch)
	h.mtls, h.uriSAN = false, "spiffe://default/admin"
	if st, _ := run(t, f, h, map[string]string{":authority": "admins.ext"}); st != shared.HeadersStatusStop {
		t.Fatal("URI SAN without mTLS must be ignored")
	}
}

func TestPanicBecomes500(t *testing.T) {
	ch, f := newFactory(t)
	h := newHandle(ch)
	fh := &fakeHeaders{m: map[string]string{}, panicGet: true}
	st := f.Create(h).OnRequestHeaders(fh, true)
	if st != shared.HeadersStatusStop || len(h.replies) != 1 || h.replies[0].status != 500 || h.counts[egress.CounterErrors] != 1 {
		t.Fatalf("status %v replies %+v counts %v", st, h.replies, h.counts)
	}
}

// A gRPC client must see the panic as INTERNAL, not as Envoy's default
// grpc-status 0 of a local reply.
func TestPanicOnGRPCBecomesStatus13(t *testing.T) {
	ch, f := newFactory(t)
	h := newHandle(ch)
	fh := &fakeHeaders{m: map[string]string{"content-type": "application/grpc"}, panicKey: ":authority"}
	st := f.Create(h).OnRequestHeaders(fh, true)
	if st != shared.HeadersStatusStop || len(h.replies) != 0 || h.counts[egress.CounterErrors] != 1 {
		t.Fatalf("status %v replies %+v counts %v", st, h.replies, h.counts)
	}
	want := [][2]string{{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "13"},
		{"grpc-message", "meshext: internal filter error"}}
	if fmt.Sprint(h.rawHeaders) != fmt.Sprint(want) {
		t.Fatalf("trailers-only reply %v, want %v", h.rawHeaders, want)
	}
}

func TestConfigErrors(t *testing.T) {
	ch := &fakeConfigHandle{}
	if _, err := (ConfigFactory{}).Create(ch, []byte(`{"source":{"mesh":"m"}}`)); err == nil || !strings.Contains(err.Error(), "source") {
		t.Fatalf("err = %v", err)
	}
	if len(ch.logs) == 0 {
		t.Fatal("config error not logged")
	}
	// A panicking host handle must not escape Create.
	if _, err := (ConfigFactory{}).Create(nil, testConfig(t)); err == nil || !strings.Contains(err.Error(), "panic") {
		t.Fatalf("nil handle: err = %v", err)
	}
	if _, err := (ConfigFactory{}).CreatePerRoute([]byte(`{}`)); err == nil {
		t.Fatal("per-route config accepted")
	}
}

// nopHandle is a fake host whose calls do nothing, so the benchmark
// measures only the adapter's Go work per request (Envoy's side of each
// call is not included).
type nopHandle struct{ shared.HttpFilterHandle }

func (nopHandle) SetMetadata(string, string, any)                  {}
func (nopHandle) ClearRouteCache()                                 {}
func (nopHandle) GetAttributeBool(shared.AttributeID) (bool, bool) { return false, true }
func (nopHandle) IncrementCounterValue(shared.MetricID, uint64, ...string) shared.MetricsResult {
	return shared.MetricsSuccess
}

type nopHeaders struct {
	shared.HeaderMap
	authority shared.UnsafeEnvoyBuffer
}

func (h *nopHeaders) GetOne(string) shared.UnsafeEnvoyBuffer { return h.authority }
func (h *nopHeaders) Set(string, string)                     {}

// BenchmarkOnRequestHeaders: the Go side of one allowed request (filter
// creation + request headers), without the cgo crossings.
func BenchmarkOnRequestHeaders(b *testing.B) {
	ch := &fakeConfigHandle{}
	f, err := ConfigFactory{}.Create(ch, testConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	hdrs := &nopHeaders{authority: buf("open.ext:80")}
	b.ReportAllocs()
	for b.Loop() {
		if f.Create(nopHandle{}).OnRequestHeaders(hdrs, true) != shared.HeadersStatusContinue {
			b.Fatal("not allowed")
		}
	}
}

// BenchmarkFastAllow is the Go work plugin/dynabi does for an allowed
// request with the rendered default config (its calls into Envoy aside).
func BenchmarkFastAllow(b *testing.B) {
	var fc egress.FilterConfig
	if err := json.Unmarshal(testConfig(b), &fc); err != nil {
		b.Fatal(err)
	}
	fc.IgnoreClientCertificates, fc.DenyMetadataOnly = true, true
	raw, err := json.Marshal(fc)
	if err != nil {
		b.Fatal(err)
	}
	f, err := ConfigFactory{}.Create(&fakeConfigHandle{}, raw)
	if err != nil {
		b.Fatal(err)
	}
	fast := f.(FastDecider)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := fast.FastAllow("open.ext:80"); !ok {
			b.Fatal("not allowed")
		}
	}
}

func TestNoopFilterPassesEverything(t *testing.T) {
	fac, err := NoopConfigFactory{}.Create(&fakeConfigHandle{}, []byte("ignored"))
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHeaders{m: map[string]string{":authority": "anything"}}
	f := fac.Create(nil)
	if st := f.OnRequestHeaders(h, true); st != shared.HeadersStatusContinue {
		t.Fatalf("request headers status %v", st)
	}
	if len(h.m) != 1 {
		t.Fatalf("noop filter changed headers: %v", h.m)
	}
	if _, err := (NoopConfigFactory{}).CreatePerRoute(nil); err == nil {
		t.Fatal("per-route config accepted")
	}
}

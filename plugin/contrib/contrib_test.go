package contrib

import (
	"encoding/json"
	"strings"
	"testing"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
)

// Fakes embed the SDK interfaces and implement only what the adapter may
// call; any other call hits the nil embedded interface and panics.

type fakeCounter struct {
	api.CounterMetric
	n int64
}

func (c *fakeCounter) Increment(d int64) { c.n += d }

type fakeConfigCallbacks struct {
	api.ConfigCallbackHandler
	counters map[string]*fakeCounter
}

func (f *fakeConfigCallbacks) DefineCounterMetric(name string) api.CounterMetric {
	c := &fakeCounter{}
	f.counters[name] = c
	return c
}

type fakeHeaders struct {
	api.RequestHeaderMap
	m map[string]string
}

func (h *fakeHeaders) GetRaw(k string) string { return h.m[k] }
func (h *fakeHeaders) Set(k, v string)        { h.m[k] = v }

type localReply struct {
	code       int
	body       string
	grpcStatus int64
	details    string
}

type fakeDecoder struct {
	api.DecoderFilterCallbacks
	replies []localReply
}

func (d *fakeDecoder) SendLocalReply(code int, body string, _ map[string][]string, grpcStatus int64, details string) {
	d.replies = append(d.replies, localReply{code, body, grpcStatus, details})
}

type fakeMetadata struct {
	api.DynamicMetadata
	m map[string]any
}

func (m *fakeMetadata) Set(ns, k string, v any) {
	if ns != egress.MetadataNamespace {
		panic("unexpected namespace " + ns)
	}
	m.m[k] = v
}

type fakeSSL struct {
	api.SslConnection
	validated bool
	uris      []string
}

func (s *fakeSSL) PeerCertificateValidated() bool  { return s.validated }
func (s *fakeSSL) UriSanPeerCertificate() []string { return s.uris }

type fakeStreamInfo struct {
	api.StreamInfo
	md  *fakeMetadata
	ssl api.SslConnection
}

func (s *fakeStreamInfo) DynamicMetadata() api.DynamicMetadata       { return s.md }
func (s *fakeStreamInfo) DownstreamSslConnection() api.SslConnection { return s.ssl }

type fakeCallbacks struct {
	api.FilterCallbackHandler
	info    *fakeStreamInfo
	dec     *fakeDecoder
	cleared int
	logs    []string
}

func (c *fakeCallbacks) StreamInfo() api.StreamInfo                         { return c.info }
func (c *fakeCallbacks) DecoderFilterCallbacks() api.DecoderFilterCallbacks { return c.dec }
func (c *fakeCallbacks) ClearRouteCache()                                   { c.cleared++ }
func (c *fakeCallbacks) Log(_ api.LogType, msg string)                      { c.logs = append(c.logs, msg) }

func newCallbacks(ssl api.SslConnection) *fakeCallbacks {
	return &fakeCallbacks{info: &fakeStreamInfo{md: &fakeMetadata{m: map[string]any{}}, ssl: ssl}, dec: &fakeDecoder{}}
}

func configJSONForTest(t *testing.T) string {
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
		Services: []core.Service{mes("open"), mes("closed"), mes("shadow")},
		Policies: []core.Policy{
			policy("deny-closed", "closed", core.Deny, core.TargetRef{Kind: core.KindMesh}),
			policy("allow-admin", "closed", core.Allow, core.TargetRef{Kind: core.KindMeshService, Name: "admin"}),
			policy("shadow", "shadow", core.AllowWithShadowDeny, core.TargetRef{Kind: core.KindMesh}),
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func parse(t *testing.T) (*fakeConfigCallbacks, interface{}) {
	t.Helper()
	cb := &fakeConfigCallbacks{counters: map[string]*fakeCounter{}}
	cfg, err := Parser{}.Parse(mustAny(t, wrapperspb.String(configJSONForTest(t))), cb)
	if err != nil {
		t.Fatal(err)
	}
	return cb, cfg
}

func TestParseConfigEncodings(t *testing.T) {
	js := configJSONForTest(t)
	st := &structpb.Struct{}
	if err := st.UnmarshalJSON([]byte(js)); err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]*anypb.Any{
		"StringValue": mustAny(t, wrapperspb.String(js)),
		"BytesValue":  mustAny(t, wrapperspb.Bytes([]byte(js))),
		"Struct":      mustAny(t, st),
		"TypedStruct": mustAny(t, &xdstype.TypedStruct{TypeUrl: "meshext", Value: st}),
	} {
		cb := &fakeConfigCallbacks{counters: map[string]*fakeCounter{}}
		cfg, err := Parser{}.Parse(a, cb)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n := cfg.(*config).live.Current().Table.Len(); n != 3 {
			t.Fatalf("%s: %d services", name, n)
		}
		if len(cb.counters) != 5 {
			t.Fatalf("%s: counters %v", name, cb.counters)
		}
	}
	cb := &fakeConfigCallbacks{counters: map[string]*fakeCounter{}}
	for name, a := range map[string]*anypb.Any{
		"nil":        nil,
		"wrong type": mustAny(t, durationpb.New(0)),
		"bad json":   mustAny(t, wrapperspb.String(`{"services":[`)),
		"invalid":    mustAny(t, wrapperspb.String(`{"source":{"mesh":"m"}}`)),
	} {
		if _, err := (Parser{}).Parse(a, cb); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Route-level Parse must never fail (Envoy aborts); the error surfaces as
// a fail-closed 500 on that route instead.
func TestRouteConfigFailsClosed(t *testing.T) {
	_, parent := parse(t)
	child, err := Parser{}.Parse(mustAny(t, wrapperspb.String("{}")), nil)
	if err != nil {
		t.Fatalf("route-level Parse returned an error: %v", err)
	}
	merged := Parser{}.Merge(parent, child)
	cb := newCallbacks(nil)
	if st := Factory(merged, cb).DecodeHeaders(&fakeHeaders{m: map[string]string{":authority": "open.ext"}}, true); st != api.LocalReply {
		t.Fatalf("status %v", st)
	}
	if len(cb.dec.replies) != 1 || cb.dec.replies[0].code != 500 {
		t.Fatalf("replies %+v", cb.dec.replies)
	}
	if (Parser{}).Merge(parent, nil) != parent {
		t.Fatal("merge without a child must keep the parent")
	}
}

func TestDecodeHeaders(t *testing.T) {
	counters, cfg := parse(t)
	type want struct {
		status  api.StatusType
		code    int
		grpc    int64
		cluster string
		action  string
		policy  string
	}
	cases := map[string]struct {
		authority string
		ssl       api.SslConnection
		want      want
	}{
		"allowed":         {"open.ext:80", nil, want{api.Continue, 0, 0, "mes_open", "Allow", "mesh-default"}},
		"denied":          {"CLOSED.ext", nil, want{api.LocalReply, 403, 7, "", "Deny", "deny-closed"}},
		"unknown":         {"other.example", nil, want{api.LocalReply, 404, 12, "", "NotFound", ""}},
		"shadow":          {"shadow.ext", nil, want{api.Continue, 0, 0, "mes_shadow", "AllowWithShadowDeny", "shadow"}},
		"spiffe admin":    {"closed.ext", &fakeSSL{validated: true, uris: []string{"spiffe://default/admin"}}, want{api.Continue, 0, 0, "mes_closed", "Allow", "allow-admin"}},
		"unvalidated SAN": {"closed.ext", &fakeSSL{validated: false, uris: []string{"spiffe://default/admin"}}, want{api.LocalReply, 403, 7, "", "Deny", "deny-closed"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cb := newCallbacks(c.ssl)
			h := &fakeHeaders{m: map[string]string{":authority": c.authority, egress.DefaultClusterHeader: "spoofed"}}
			st := Factory(cfg, cb).DecodeHeaders(h, true)
			if st != c.want.status {
				t.Fatalf("status %v, want %v", st, c.want.status)
			}
			if c.want.code != 0 {
				if len(cb.dec.replies) != 1 || cb.dec.replies[0].code != c.want.code || cb.dec.replies[0].grpcStatus != c.want.grpc {
					t.Fatalf("replies %+v", cb.dec.replies)
				}
				if strings.ContainsAny(cb.dec.replies[0].details, " \t") {
					t.Fatalf("details must not contain whitespace: %q", cb.dec.replies[0].details)
				}
			} else {
				if len(cb.dec.replies) != 0 || h.m[egress.DefaultClusterHeader] != c.want.cluster || cb.cleared != 1 {
					t.Fatalf("replies %+v header %q cleared %d", cb.dec.replies, h.m[egress.DefaultClusterHeader], cb.cleared)
				}
			}
			md := cb.info.md.m
			if md["action"] != c.want.action || (c.want.policy != "" && md["policy"] != c.want.policy) {
				t.Fatalf("metadata %v", md)
			}
		})
	}
	if counters.counters[egress.CounterAllowed].n != 3 || counters.counters[egress.CounterDenied].n != 2 ||
		counters.counters[egress.CounterUnknownHost].n != 1 || counters.counters[egress.CounterShadowDeny].n != 1 {
		t.Fatalf("counters allowed=%d denied=%d unknown=%d shadow=%d", counters.counters[egress.CounterAllowed].n,
			counters.counters[egress.CounterDenied].n, counters.counters[egress.CounterUnknownHost].n, counters.counters[egress.CounterShadowDeny].n)
	}
}

// parseTestConfigWith parses configJSONForTest changed by edit.
func parseTestConfigWith(t *testing.T, edit func(*egress.FilterConfig)) any {
	t.Helper()
	var fc egress.FilterConfig
	if err := json.Unmarshal([]byte(configJSONForTest(t)), &fc); err != nil {
		t.Fatal(err)
	}
	edit(&fc)
	raw, err := json.Marshal(fc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parser{}.Parse(mustAny(t, wrapperspb.String(string(raw))), &fakeConfigCallbacks{counters: map[string]*fakeCounter{}})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestFixedClusterOnlyAuthorizes(t *testing.T) {
	cfg := parseTestConfigWith(t, func(fc *egress.FilterConfig) { fc.FixedCluster = true })
	cb := newCallbacks(nil)
	h := &fakeHeaders{m: map[string]string{":authority": "open.ext"}}
	if st := Factory(cfg, cb).DecodeHeaders(h, true); st != api.Continue || cb.cleared != 0 || h.m[egress.DefaultClusterHeader] != "" {
		t.Fatalf("allowed: status %v, route cache cleared %d times, cluster header %q", st, cb.cleared, h.m[egress.DefaultClusterHeader])
	}
	cb = newCallbacks(nil)
	if st := Factory(cfg, cb).DecodeHeaders(&fakeHeaders{m: map[string]string{":authority": "closed.ext"}}, true); st != api.LocalReply ||
		len(cb.dec.replies) != 1 || cb.dec.replies[0].code != 403 {
		t.Fatalf("denied: status %v replies %+v", st, cb.dec.replies)
	}
}

// With denyMetadataOnly (the rendered default) an allowed request carries
// no decision metadata; a denial and a shadow denial do.
func TestDenyMetadataOnly(t *testing.T) {
	cfg := parseTestConfigWith(t, func(fc *egress.FilterConfig) { fc.DenyMetadataOnly = true })
	for host, action := range map[string]any{"open.ext": nil, "closed.ext": "Deny", "shadow.ext": "AllowWithShadowDeny"} {
		cb := newCallbacks(nil)
		Factory(cfg, cb).DecodeHeaders(&fakeHeaders{m: map[string]string{":authority": host}}, true)
		if got := cb.info.md.m["action"]; got != action || (action == nil && len(cb.info.md.m) != 0) {
			t.Errorf("%s: metadata %v, want action %v", host, cb.info.md.m, action)
		}
	}
}

type panickingHeaders struct{ api.RequestHeaderMap }

func (panickingHeaders) GetRaw(string) string { panic("boom") }

func TestPanicBecomes500(t *testing.T) {
	counters, cfg := parse(t)
	cb := newCallbacks(nil)
	if st := Factory(cfg, cb).DecodeHeaders(panickingHeaders{}, true); st != api.LocalReply {
		t.Fatalf("status %v", st)
	}
	if len(cb.dec.replies) != 1 || cb.dec.replies[0].code != 500 || counters.counters[egress.CounterErrors].n != 1 {
		t.Fatalf("replies %+v", cb.dec.replies)
	}
}

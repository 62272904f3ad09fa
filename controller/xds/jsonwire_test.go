package xds_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/bench/workload"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/xds"
	"github.com/meshext/meshext/e2e/testpki"
)

// The JSON writer must print what protojson prints. For each message two
// checks, plain and as an Any's content (how the drop files hold it),
// printed from its deterministic encoding, or from wire when not nil (any
// encoding of it, canonical or not):
// protojson reads our output back to the message protojson's own output
// reads back to (the input itself when it has no unknown fields and its
// Anys are packed deterministically: strict says so), and both outputs
// are the same JSON value (numbers compared as numbers).
func checkJSON(t testing.TB, m proto.Message, strict bool) { checkJSONWire(t, m, nil, strict) }

func checkJSONWire(t testing.TB, m proto.Message, wire []byte, strict bool) {
	t.Helper()
	appendJSON := func(b []byte, m proto.Message, url string) ([]byte, error) {
		if wire == nil {
			return xds.AppendJSON(b, m, url)
		}
		return xds.AppendJSONWire(b, m, wire, url)
	}
	url := "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
	cases := []struct {
		url  string
		want proto.Message // what protojson prints
	}{{"", m}}
	if a, err := anypb.New(m); err == nil {
		cases = append(cases, struct {
			url  string
			want proto.Message
		}{url, a})
	} else if _, err := appendJSON(nil, m, url); err == nil {
		t.Fatalf("%s: no Any of it (%v), but an Any's JSON", name(m), err)
	}
	for _, c := range cases {
		got, gerr := appendJSON([]byte("prefix"), m, c.url)
		want, werr := protojson.Marshal(c.want)
		if werr != nil || gerr != nil {
			if werr == nil || gerr == nil {
				t.Fatalf("%s (@type %q): protojson error %v, ours %v", name(m), c.url, werr, gerr)
			}
			continue
		}
		if !strings.HasPrefix(string(got), "prefix") {
			t.Fatalf("%s: the buffer's prefix is gone: %.40s", name(m), got)
		}
		got = got[len("prefix"):]
		var gv, wv any
		if err := json.Unmarshal(got, &gv); err != nil {
			t.Fatalf("%s (@type %q): our output is not JSON: %v\n%s", name(m), c.url, err, got)
		}
		if err := json.Unmarshal(want, &wv); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gv, wv) {
			t.Fatalf("%s (@type %q): JSON differs\nours:      %s\nprotojson: %s", name(m), c.url, got, want)
		}
		back, wantBack := c.want.ProtoReflect().New().Interface(), c.want.ProtoReflect().New().Interface()
		gerr, werr = protojson.Unmarshal(got, back), protojson.Unmarshal(want, wantBack)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%s (@type %q): reading back: protojson's output %v, ours %v", name(m), c.url, werr, gerr)
		}
		if gerr != nil {
			continue
		}
		if !proto.Equal(back, wantBack) {
			t.Fatalf("%s (@type %q): protojson reads our output as another message", name(m), c.url)
		}
		if strict && c.url == "" && !proto.Equal(back, m) {
			t.Fatalf("%s: protojson reads our output as another message than the input", name(m))
		}
	}
}

// noFallback runs f and fails if any item went to protojson: the encoder
// must handle everything meshext renders itself.
func noFallback(t testing.TB, f func()) {
	t.Helper()
	before := xds.JSONFallbacks()
	f()
	if n := xds.JSONFallbacks() - before; n > 0 {
		t.Fatalf("%d items printed by protojson, not by the encoder", n)
	}
}

func name(m proto.Message) string { return string(m.ProtoReflect().Descriptor().FullName()) }

// TestJSONFixtures: this package's own test resources.
func TestJSONFixtures(t *testing.T) {
	noFallback(t, func() {
		for _, m := range xds.JSONFixtures() {
			checkJSON(t, m, true)
		}
	})
}

// TestJSONRenderGoldens: every resource in controller/render's golden files
// (the renderer's output on its golden inputs; secrets redacted), read back
// with protojson.
func TestJSONRenderGoldens(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "render", "testdata", "*.golden.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no render goldens: %v", err)
	}
	kinds := map[string]func() proto.Message{
		"clusters":  func() proto.Message { return &clusterv3.Cluster{} },
		"listeners": func() proto.Message { return &listenerv3.Listener{} },
		"secrets":   func() proto.Message { return &tlsv3.Secret{} },
		"routes":    func() proto.Message { return &routev3.RouteConfiguration{} },
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			Nodes map[string]map[string]json.RawMessage `json:"nodes"`
		}
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, node := range g.Nodes {
			for kind, mk := range kinds {
				var raws []json.RawMessage
				if len(node[kind]) > 0 {
					if err := json.Unmarshal(node[kind], &raws); err != nil {
						t.Fatalf("%s %s: %v", f, kind, err)
					}
				}
				for _, raw := range raws {
					m := mk()
					if err := protojson.Unmarshal(raw, m); err != nil {
						t.Fatalf("%s %s: %v", f, kind, err)
					}
					noFallback(t, func() { checkJSON(t, m, true) })
					n++
				}
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d resources in %d golden files", n, len(files))
	}
	t.Logf("%d resources from %d golden files", n, len(files))
}

// renderDir renders the resources under dirs as meshext render does, with
// file SDS and RDS in file drops under out.
func renderDir(t testing.TB, out string, routesVia string, dirs ...string) *render.Output {
	t.Helper()
	set, _, err := resource.Load(dirs, resource.Options{Zone: "default"})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	w := model.Build(set, model.Options{Zone: "default", SystemCAPath: bundle})
	opts := render.Options{SecretsVia: render.SecretsFile, SecretsDir: xds.SecretDir(out), RoutesVia: routesVia}
	if routesVia == render.RoutesFile {
		opts.RoutesDir = out
	}
	o, err := render.Render(w, opts)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// checkDrop writes o as a JSON drop and checks every file against
// protojson's form of the same DiscoveryResponse, and each resource alone.
func checkDrop(t testing.TB, out string, o *render.Output, each bool) {
	t.Helper()
	nodes := map[string]*xds.Resources{}
	for id, n := range o.Nodes {
		nodes[id] = &xds.Resources{Clusters: n.Clusters, Listeners: n.Listeners, Routes: n.Routes, Secrets: n.Secrets}
		if each {
			for _, m := range nodeMessages(n) {
				checkJSON(t, m, true)
			}
		}
	}
	w := &xds.FileWriter{Dir: out}
	if _, err := w.Write(nodes); err != nil {
		t.Fatal(err)
	}
	files := 0
	err := filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		files++
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var dr discoveryv3.DiscoveryResponse
		if err := protojson.Unmarshal(data, &dr); err != nil {
			return fmt.Errorf("%s: %v", p, err)
		}
		want, err := protojson.Marshal(&dr)
		if err != nil {
			return err
		}
		var gv, wv any
		if err := json.Unmarshal(data, &gv); err != nil {
			return fmt.Errorf("%s: %v", p, err)
		}
		if err := json.Unmarshal(want, &wv); err != nil {
			return err
		}
		if !reflect.DeepEqual(gv, wv) {
			return fmt.Errorf("%s differs from protojson's form of what it holds", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no file written")
	}
	// The resources protojson reads from the files are the rendered ones.
	for id, n := range o.Nodes {
		if len(n.Clusters) == 0 {
			continue
		}
		data, err := os.ReadFile(xds.CDSPath(out, id))
		if err != nil {
			t.Fatal(err)
		}
		var dr discoveryv3.DiscoveryResponse
		if err := protojson.Unmarshal(data, &dr); err != nil {
			t.Fatal(err)
		}
		if len(dr.Resources) != len(n.Clusters) {
			t.Fatalf("node %s: %d clusters in cds.json, %d rendered", id, len(dr.Resources), len(n.Clusters))
		}
		for i, a := range dr.Resources {
			c := &clusterv3.Cluster{}
			if err := a.UnmarshalTo(c); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(c, n.Clusters[i]) {
				t.Fatalf("node %s: cluster %s reads back as another", id, n.Clusters[i].Name)
			}
		}
		data, err = os.ReadFile(xds.LDSPath(out, id))
		if err != nil {
			t.Fatal(err)
		}
		if err := protojson.Unmarshal(data, &dr); err != nil {
			t.Fatal(err)
		}
		for i, a := range dr.Resources {
			l := &listenerv3.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(l, n.Listeners[i]) {
				t.Fatalf("node %s: listener %s reads back as another", id, n.Listeners[i].Name)
			}
		}
	}
}

// TestJSONExamples: the repo's examples, alone and with examples-egress,
// with route tables inline and in RDS files.
func TestJSONExamples(t *testing.T) {
	for _, dirs := range [][]string{{"../../examples"}, {"../../examples", "../../examples-egress"}} {
		for _, routes := range []string{"", render.RoutesFile} {
			out := t.TempDir()
			o := renderDir(t, out, routes, dirs...)
			noFallback(t, func() { checkDrop(t, out, o, true) })
		}
	}
}

// TestJSONGenerated1k: 1000 TLS services as the benchmark generates them,
// so the transparent listener is written chain by chain.
func TestJSONGenerated1k(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	out := t.TempDir()
	o := renderDir(t, out, "", generatedServices(t, 1000))
	chains := 0
	for _, n := range o.Nodes {
		for _, l := range n.Listeners {
			chains = max(chains, len(l.FilterChains))
		}
	}
	if chains < 512 {
		t.Fatalf("largest listener has %d chains: the chain-by-chain path is not taken", chains)
	}
	noFallback(t, func() { checkDrop(t, out, o, true) })
}

// wktCluster sets fields of the kinds and well-known types our configs
// rarely or never use, so each encoding is seen at least once.
func wktCluster() *clusterv3.Cluster {
	st, _ := structpb.NewStruct(map[string]any{"a": 1.5, "b": []any{"x", nil, true}, "c": map[string]any{"d": -0.0}})
	ts, _ := anypb.New(timestamppb.New(timestamppb.Now().AsTime()))
	dur, _ := anypb.New(durationpb.New(-1500 * 1e6))
	empty, _ := anypb.New(&emptypb.Empty{})
	wrapped, _ := anypb.New(wrapperspb.UInt64(math.MaxUint64))
	fm, _ := anypb.New(&fieldmaskpb.FieldMask{Paths: []string{"foo_bar", "baz"}})
	return &clusterv3.Cluster{
		Name:                          "wkt \"quoted\" \\ \x01\t\u2028 é",
		ConnectTimeout:                &durationpb.Duration{Seconds: 3, Nanos: 1000},
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(0),
		DnsLookupFamily:               clusterv3.Cluster_DnsLookupFamily(99),
		Metadata: &corev3.Metadata{
			FilterMetadata:      map[string]*structpb.Struct{"z": st, "a": {}, "é": st},
			TypedFilterMetadata: map[string]*anypb.Any{"ts": ts, "dur": dur, "empty": empty, "wrapped": wrapped, "fm": fm, "none": {}},
		},
		CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{
			HealthyPanicThreshold: &typev3.Percent{Value: math.NaN()},
		},
		LbConfig: &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{
			ActiveRequestBias: &corev3.RuntimeDouble{DefaultValue: 1e-7, RuntimeKey: "k"},
		}},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: "x",
			Policy: &endpointv3.ClusterLoadAssignment_Policy{
				OverprovisioningFactor: wrapperspb.UInt32(140),
				EndpointStaleAfter:     &durationpb.Duration{Nanos: -5},
			},
		},
		MaxRequestsPerConnection: wrapperspb.UInt32(math.MaxUint32),
		DnsRefreshRate:           &durationpb.Duration{Seconds: 315576000000},
		UpstreamConnectionOptions: &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{
			KeepaliveProbes: wrapperspb.UInt32(3),
		}},
	}
}

// TestJSONWellKnownTypes covers the encodings the rendered configs leave
// out, and the cases protojson refuses (we must refuse them too).
func TestJSONWellKnownTypes(t *testing.T) {
	c := wktCluster()
	noFallback(t, func() { checkJSON(t, c, false) })
	for _, f := range []float64{0, -0.0, 1, 1e20, 1e21, 1e-6, 1e-7, 123456.789, math.Inf(1), math.Inf(-1), math.MaxFloat64, math.SmallestNonzeroFloat64} {
		c.CommonLbConfig.HealthyPanicThreshold.Value = f
		checkJSON(t, c, !math.IsNaN(f))
	}
	for _, d := range []*durationpb.Duration{{}, {Nanos: 1}, {Nanos: -1}, {Seconds: -2, Nanos: -10000}, {Nanos: 999999999}, {Seconds: 1, Nanos: 120000000}} {
		c.ConnectTimeout = d
		checkJSON(t, c, false)
	}
	// Refused by protojson: out-of-range and mixed-sign durations, invalid
	// UTF-8, an Any of an unknown type or with a value but no type.
	bad := []func(c *clusterv3.Cluster){
		func(c *clusterv3.Cluster) { c.ConnectTimeout = &durationpb.Duration{Seconds: 315576000001} },
		func(c *clusterv3.Cluster) { c.ConnectTimeout = &durationpb.Duration{Seconds: 1, Nanos: -1} },
		func(c *clusterv3.Cluster) { c.ConnectTimeout = &durationpb.Duration{Nanos: 1e9} },
		func(c *clusterv3.Cluster) { c.Name = "bad \xff" },
		func(c *clusterv3.Cluster) { c.Metadata.FilterMetadata["\xff"] = &structpb.Struct{} },
		func(c *clusterv3.Cluster) {
			c.Metadata.TypedFilterMetadata["x"] = &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}
		},
		func(c *clusterv3.Cluster) { c.Metadata.TypedFilterMetadata["x"] = &anypb.Any{Value: []byte{8, 1}} },
		func(c *clusterv3.Cluster) {
			c.Metadata.TypedFilterMetadata["x"] = &anypb.Any{TypeUrl: "type.googleapis.com/google.protobuf.Duration", Value: []byte{0xff}}
		},
	}
	for i, f := range bad {
		c := wktCluster()
		f(c)
		if _, err := protojson.Marshal(c); err == nil {
			t.Fatalf("bad case %d: protojson accepts it", i)
		}
		before := xds.JSONFallbacks()
		checkJSON(t, c, false) // checks that both refuse
		if xds.JSONFallbacks() == before {
			t.Fatalf("bad case %d: the encoder did not leave it to protojson", i)
		}
	}
}

// TestJSONOddWire: encodings a marshaller does not write but that decode
// (Any bytes may hold them) print as protojson prints what they decode to;
// those the encoder takes as they are must not go to protojson.
func TestJSONOddWire(t *testing.T) {
	tag := protowire.AppendTag
	str := func(b []byte, num protowire.Number, s string) []byte {
		return protowire.AppendString(tag(b, num, protowire.BytesType), s)
	}
	msg := func(b []byte, num protowire.Number, m []byte) []byte {
		return protowire.AppendBytes(tag(b, num, protowire.BytesType), m)
	}
	varint := func(b []byte, num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(tag(b, num, protowire.VarintType), v)
	}
	entry := func(k string, v []byte) []byte { return msg(str(nil, 1, k), 2, v) }
	// Cluster: name 1, metadata 25 (filter_metadata 1: map<string, Struct>),
	// load_assignment 33 (cluster_name 1, endpoints 2); RetryPolicy:
	// retriable_status_codes 7 (repeated uint32); Int32Range: start 1, end
	// 2; Struct: fields 1 (map<string, Value>); Value: null_value 1.
	packed := protowire.AppendVarint(protowire.AppendVarint(nil, 503), 0)
	cases := []struct {
		name     string
		m        proto.Message
		wire     []byte
		fallback bool
	}{
		{"zero string written", &clusterv3.Cluster{}, str(nil, 1, ""), false},
		{"zero enum written", &clusterv3.Cluster{}, varint(nil, 2, 0), false},
		{"int32 truncated to zero", &typev3.Int32Range{}, varint(varint(nil, 1, 1<<32), 2, 1<<32+7), false},
		{"unknown field", &clusterv3.Cluster{}, str(varint(nil, 9999, 7), 1, "a"), false},
		{"map key twice", &corev3.Metadata{}, msg(msg(nil, 1, entry("k", nil)), 1, entry("k", msg(nil, 1, entry("f", varint(nil, 1, 0))))), false},
		{"map entry without key or value", &corev3.Metadata{}, msg(nil, 1, nil), false},
		{"packed and unpacked", &routev3.RetryPolicy{}, varint(msg(nil, 7, packed), 7, 404), false},
		{"empty packed run", &routev3.RetryPolicy{}, msg(nil, 7, nil), false},
		{"name twice", &clusterv3.Cluster{}, str(str(nil, 1, "a"), 1, "b"), true},
		{"message twice (merged)", &clusterv3.Cluster{}, msg(msg(nil, 33, str(nil, 1, "a")), 33, msg(nil, 2, nil)), true},
		{"list in two runs", &endpointv3.ClusterLoadAssignment{}, msg(str(msg(nil, 2, nil), 1, "c"), 2, nil), true},
		{"wrong wire type", &clusterv3.Cluster{}, varint(nil, 1, 5), true},
		{"two oneof members", &corev3.DataSource{}, str(str(nil, 1, "/f"), 3, "inline"), true},
	}
	for _, c := range cases {
		m := c.m.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(c.wire, m); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		before := xds.JSONFallbacks()
		checkJSONWire(t, m, c.wire, false)
		if fell := xds.JSONFallbacks() > before; fell != c.fallback {
			t.Errorf("%s: went to protojson %v, want %v", c.name, fell, c.fallback)
		}
	}
}

// fuzzTypes are the resources the drops hold; a fuzz input's first byte
// picks one, the rest is its binary encoding.
var fuzzTypes = []func() proto.Message{
	func() proto.Message { return &clusterv3.Cluster{} },
	func() proto.Message { return &listenerv3.Listener{} },
	func() proto.Message { return &routev3.RouteConfiguration{} },
	func() proto.Message { return &tlsv3.Secret{} },
	func() proto.Message { return &endpointv3.ClusterLoadAssignment{} },
}

// FuzzJSON: messages decoded from random bytes (unknown fields, unset
// defaults, odd enum numbers, Anys of any content) print as protojson's.
func FuzzJSON(f *testing.F) {
	seeds := append(xds.JSONFixtures(), wktCluster())
	for _, dirs := range [][]string{{"../../examples"}, {"../../examples", "../../examples-egress"}} {
		o := renderDir(f, f.TempDir(), render.RoutesFile, dirs...)
		for _, n := range o.Nodes {
			seeds = append(seeds, nodeMessages(n)...)
		}
	}
	f.Logf("%d seeds", len(seeds))
	for _, m := range seeds {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		for i, mk := range fuzzTypes {
			if mk().ProtoReflect().Descriptor() == m.ProtoReflect().Descriptor() {
				f.Add(append([]byte{byte(i)}, b...))
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		m := fuzzTypes[int(data[0])%len(fuzzTypes)]()
		if err := proto.Unmarshal(data[1:], m); err != nil {
			return
		}
		strict := !hasUnknown(m.ProtoReflect())
		checkJSON(t, m, strict)
		// The same from the fuzz bytes themselves: fields twice, lists in
		// runs, zero values written out, unknown fields.
		checkJSONWire(t, m, data[1:], strict)
	})
}

// hasUnknown says whether m or a message in it has unknown fields (which
// JSON drops) or an Any (whose bytes protojson re-encodes on reading).
func hasUnknown(m protoreflect.Message) bool {
	if len(m.GetUnknown()) > 0 || m.Descriptor().FullName() == "google.protobuf.Any" {
		return true
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				found = found || hasUnknown(v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool {
				found = found || hasUnknown(v.Message())
				return !found
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			found = hasUnknown(v.Message())
		}
		return !found
	})
	return found
}

// bench10k renders 10k TLS services as meshext-cpbench generates them.
func bench10k(b *testing.B) *render.Node {
	o := renderDir(b, b.TempDir(), "", generatedServices(b, 10000))
	return o.Nodes[render.DefaultNodeID]
}

// generatedServices is a directory with n TLS services as the benchmark
// generates them (bench/workload: one CA, two hostnames each, port
// 10000+i).
func generatedServices(tb testing.TB, n int) string {
	tb.Helper()
	res := tb.TempDir()
	ca, err := testpki.NewCA()
	if err != nil {
		tb.Fatal(err)
	}
	caB64 := base64.StdEncoding.EncodeToString(ca.CertPEM)
	docs := []string{workload.HostnameGenerators()}
	for i := range n {
		docs = append(docs, workload.MES(i, 10000+i, caB64))
	}
	if err := os.WriteFile(filepath.Join(res, "mes.yaml"), []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		tb.Fatal(err)
	}
	return res
}

// nodeMessages is every resource a node renders: clusters, listeners,
// routes, secrets.
func nodeMessages(n *render.Node) []proto.Message {
	var out []proto.Message
	for _, m := range n.Clusters {
		out = append(out, m)
	}
	for _, m := range n.Listeners {
		out = append(out, m)
	}
	for _, m := range n.Routes {
		out = append(out, m)
	}
	for _, m := range n.Secrets {
		out = append(out, m)
	}
	return out
}

// BenchmarkWriteDiscoveryJSON10k is the JSON of a 10k-service node's CDS
// and LDS files (written to io.Discard), wall time and the process's CPU:
// from the wire forms the writer has from hashing the versions (as Write
// does), and marshalling each resource itself.
func BenchmarkWriteDiscoveryJSON10k(b *testing.B) {
	n := bench10k(b)
	clusters := make([]proto.Message, len(n.Clusters))
	for i, c := range n.Clusters {
		clusters[i] = c
	}
	listeners := make([]proto.Message, len(n.Listeners))
	for i, l := range n.Listeners {
		listeners[i] = l
	}
	wires := func(items []proto.Message) [][]byte {
		out := make([][]byte, len(items))
		for i, m := range items {
			var err error
			if out[i], err = (proto.MarshalOptions{Deterministic: true}).Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
		return out
	}
	cw, lw := wires(clusters), wires(listeners)
	for _, c := range []struct {
		name   string
		cw, lw [][]byte
	}{{"wires", cw, lw}, {"marshal", nil, nil}} {
		b.Run(c.name, func(b *testing.B) {
			var bytes countWriter
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				bytes = 0
				if err := xds.WriteDiscoveryJSON(&bytes, "v1", "type.googleapis.com/envoy.config.cluster.v3.Cluster", clusters, c.cw); err != nil {
					b.Fatal(err)
				}
				if err := xds.WriteDiscoveryJSON(&bytes, "v1", "type.googleapis.com/envoy.config.listener.v3.Listener", listeners, c.lw); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
			b.ReportMetric(float64(bytes)/1e6, "MB")
		})
	}
}

type countWriter int

func (w *countWriter) Write(p []byte) (int, error) { *w += countWriter(len(p)); return len(p), nil }

// cpuTime is the process's user+system CPU time in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

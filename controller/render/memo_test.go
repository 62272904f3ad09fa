package render

import (
	"encoding/base64"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/e2e/testpki"
)

// memoFiles is a drop directory in memory: file name -> content. parse
// keeps each file's objects while its content is unchanged, as the run
// pipeline's parse cache does, so unchanged resources keep their identity
// from one build to the next.
type memoFiles struct {
	files  map[string]string
	parsed map[string][]resource.Object
	by     map[string]string // file -> content parsed
}

func (f *memoFiles) world(t *testing.T, mtls bool) *model.World {
	t.Helper()
	set := &resource.Set{}
	names := make([]string, 0, len(f.files))
	for n := range f.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if f.by[n] != f.files[n] {
			objs, errs := resource.ParseBytes(n, []byte(f.files[n]))
			for _, e := range errs {
				t.Fatalf("parse %s: %v", n, e)
			}
			f.parsed[n], f.by[n] = objs, f.files[n]
		}
		for _, o := range f.parsed[n] {
			if fe := set.Add(o); fe != nil {
				t.Fatal(fe)
			}
		}
	}
	set.ComputeLabels(resource.Options{})
	w := model.Build(set, model.Options{SystemCAPath: systemCAPath})
	for _, p := range w.Problems {
		t.Fatalf("build problem: %v", p)
	}
	if mtls {
		standInIdentities(t, w, "web")
	}
	return w
}

func memoMES(name, protocol string, port int, tls string) string {
	return fmt.Sprintf(`type: MeshExternalService
name: %s
mesh: default
spec:
  match: {type: HostnameGenerator, port: 443, protocol: %s}
  endpoints: [{address: 10.0.0.1, port: %d}, {address: %s.example.com, port: 443}]
%s`, name, protocol, port, name, tls)
}

func memoTLS(verification string) string {
	return "  tls:\n    enabled: true\n    verification:\n" + verification
}

// TestMemoRendersWhatAFreshRenderDoes edits, one at a time, each input a
// service's rendered messages depend on (its own spec, a Secret it trusts,
// every cluster-side policy kind, a HostnameGenerator, mesh mTLS, the
// Options) and checks after each edit that rendering with the Memo of the
// previous steps gives exactly what a fresh Render gives, and that the
// edit changed the config.
func TestMemoRendersWhatAFreshRenderDoes(t *testing.T) {
	ca1, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	inlineCA := func(pem []byte) string {
		return memoTLS("      caCert: {inline: " + base64.StdEncoding.EncodeToString(pem) + "}\n")
	}
	secret := func(pem []byte) string {
		return "type: Secret\nname: ca\nmesh: default\ndata: " + base64.StdEncoding.EncodeToString(pem) + "\n"
	}
	policy := func(kind, conf string) string {
		return fmt.Sprintf("type: %s\nname: a-p\nmesh: default\nspec:\n  targetRef: {kind: Mesh}\n  to:\n    - targetRef: {kind: Mesh}\n      default:\n%s", kind, conf)
	}
	gen := func(suffix string) string {
		return `type: HostnameGenerator
name: gen
spec:
  selector: {meshExternalService: {matchLabels: {kuma.io/origin: zone}}}
  template: "{{ .DisplayName }}.` + suffix + `"
`
	}
	const dataplane = `type: Dataplane
mesh: default
name: web
networking:
  address: 127.0.0.1
  outbound:
    - port: 8080
      backendRef: {kind: MeshExternalService, name: api}
`
	f := &memoFiles{files: map[string]string{
		"api.yaml":  memoMES("api", "http", 8443, inlineCA(ca1.CertPEM)),
		"db.yaml":   memoMES("db", "tcp", 5432, memoTLS("      caCert: {secret: ca}\n")),
		"rpc.yaml":  memoMES("rpc", "grpc", 9000, ""),
		"ca.yaml":   secret(ca1.CertPEM),
		"gen.yaml":  gen("ext.local"),
		"mesh.yaml": "type: Mesh\nname: default\n",
	}, parsed: map[string][]resource.Object{}, by: map[string]string{}}

	steps := []struct {
		name string
		edit func(o *Options)
		mtls bool
	}{
		{name: "start", edit: func(*Options) {}},
		{name: "endpoint port", edit: func(*Options) { f.files["api.yaml"] = memoMES("api", "http", 9443, inlineCA(ca1.CertPEM)) }},
		{name: "inline CA", edit: func(*Options) { f.files["api.yaml"] = memoMES("api", "http", 9443, inlineCA(ca2.CertPEM)) }},
		{name: "trusted Secret", edit: func(*Options) { f.files["ca.yaml"] = secret(ca2.CertPEM) }},
		{name: "MeshTimeout", edit: func(*Options) {
			f.files["pol-timeout.yaml"] = policy("MeshTimeout", "        connectionTimeout: 2s\n        idleTimeout: 20m\n")
		}},
		{name: "MeshTimeout value", edit: func(*Options) {
			f.files["pol-timeout.yaml"] = policy("MeshTimeout", "        connectionTimeout: 3s\n        idleTimeout: 20m\n")
		}},
		{name: "MeshCircuitBreaker", edit: func(*Options) {
			f.files["pol-cb.yaml"] = policy("MeshCircuitBreaker", "        connectionLimits: {maxConnections: 10}\n")
		}},
		{name: "MeshLoadBalancingStrategy", edit: func(*Options) {
			f.files["pol-lb.yaml"] = policy("MeshLoadBalancingStrategy", "        loadBalancer: {type: Random}\n")
		}},
		{name: "MeshHealthCheck", edit: func(*Options) {
			f.files["pol-hc.yaml"] = policy("MeshHealthCheck", "        interval: 10s\n        timeout: 2s\n        unhealthyThreshold: 3\n        healthyThreshold: 1\n        tcp: {}\n")
		}},
		{name: "policy removed", edit: func(*Options) { delete(f.files, "pol-cb.yaml") }},
		{name: "HostnameGenerator", edit: func(*Options) { f.files["gen.yaml"] = gen("other.local") }},
		{name: "MeshTrafficPermission deny", edit: func(*Options) {
			f.files["mtp.yaml"] = "type: MeshTrafficPermission\nname: no-db\nmesh: default\nspec:\n  targetRef: {kind: MeshExternalService, name: db}\n  from:\n    - targetRef: {kind: Mesh}\n      default: {action: Deny}\n"
		}},
		{name: "denied service's endpoint", edit: func(*Options) {
			f.files["db.yaml"] = memoMES("db", "tcp", 5433, memoTLS("      caCert: {secret: ca}\n"))
		}},
		{name: "MeshTrafficPermission allow", edit: func(*Options) {
			f.files["mtp.yaml"] = strings.Replace(f.files["mtp.yaml"], "Deny", "Allow", 1)
		}},
		{name: "MeshHTTPRoute to another service", edit: func(*Options) {
			f.files["route.yaml"] = "type: MeshHTTPRoute\nname: r\nmesh: default\nspec:\n  to:\n    - targetRef: {kind: MeshExternalService, name: api}\n      rules:\n        - matches: [{path: {type: PathPrefix, value: /rpc}}]\n          default:\n            backendRefs: [{kind: MeshExternalService, name: rpc}]\n"
		}},
		{name: "route backend's port", edit: func(*Options) { f.files["rpc.yaml"] = memoMES("rpc", "grpc", 9001, "") }},
		{name: "route backend removed", edit: func(*Options) { delete(f.files, "rpc.yaml") }},
		{name: "route backend back", edit: func(*Options) { f.files["rpc.yaml"] = memoMES("rpc", "grpc", 9001, "") }},
		{name: "route backend denied", edit: func(*Options) {
			f.files["mtp-rpc.yaml"] = "type: MeshTrafficPermission\nname: no-rpc\nmesh: default\nspec:\n  targetRef: {kind: MeshExternalService, name: rpc}\n  from:\n    - targetRef: {kind: Mesh}\n      default: {action: Deny}\n"
		}},
		{name: "MeshHTTPRoute removed", edit: func(*Options) { delete(f.files, "route.yaml"); delete(f.files, "mtp-rpc.yaml") }},
		{name: "MeshAccessLog", edit: func(*Options) {
			f.files["log.yaml"] = policy("MeshAccessLog", "        backends: [{type: File, file: {path: /var/log/mesh.log}}]\n")
		}},
		{name: "endpoint under MeshAccessLog", edit: func(*Options) { f.files["api.yaml"] = memoMES("api", "http", 9444, inlineCA(ca2.CertPEM)) }},
		{name: "MeshAccessLog removed", edit: func(*Options) { delete(f.files, "log.yaml") }},
		{name: "Options.UpstreamDNS", edit: func(o *Options) { o.UpstreamDNS = "127.0.0.1:5353" }},
		{name: "Options.SecretsVia", edit: func(o *Options) { o.SecretsVia, o.SecretsDir = SecretsFile, "/var/run/meshext/xds/secrets" }},
		{name: "Options.RoutesVia", edit: func(o *Options) { o.RoutesVia = RoutesADS }},
		{name: "Options.Plugin", edit: func(o *Options) { o.Plugin = PluginOn }},
		{name: "Dataplane", edit: func(*Options) { f.files["dp.yaml"] = dataplane }},
		{name: "mesh mTLS", mtls: true, edit: func(*Options) {
			f.files["mesh.yaml"] = "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends: [{name: ca-1, type: builtin}]\nrouting: {zoneEgress: true}\n"
			f.files["egress.yaml"] = "type: ZoneEgress\nname: egress-1\nnetworking: {address: 127.0.0.2, port: 10002}\n"
		}},
		{name: "mesh mTLS off", edit: func(*Options) {
			f.files["mesh.yaml"] = "type: Mesh\nname: default\n"
			delete(f.files, "egress.yaml")
		}},
	}
	memo := &Memo{}
	// The forward proxy matches requests' hosts: the generated hostnames
	// are part of the config.
	opts := Options{HTTPProxyListen: "127.0.0.1:15080"}
	var prev *Output
	for _, st := range steps {
		st.edit(&opts)
		fresh, err := Render(f.world(t, st.mtls), opts)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, err := memo.Render(f.world(t, st.mtls), opts)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if d := outputDiff(fresh, got); d != "" {
			t.Errorf("%s: with the memo: %s", st.name, d)
		}
		if prev != nil && outputDiff(prev, got) == "" {
			t.Errorf("%s: the edit changed nothing in the config (the step tests nothing)", st.name)
		}
		prev = got
	}
}

// outputDiff names the first difference between two outputs ("" = none).
func outputDiff(a, b *Output) string {
	if !reflect.DeepEqual(a.NodeIDs(), b.NodeIDs()) {
		return fmt.Sprintf("nodes %v, want %v", b.NodeIDs(), a.NodeIDs())
	}
	if !reflect.DeepEqual(a.Warnings, b.Warnings) {
		return fmt.Sprintf("warnings %q, want %q", b.Warnings, a.Warnings)
	}
	for _, id := range a.NodeIDs() {
		x, y := a.Nodes[id], b.Nodes[id]
		xv, xerr := x.Version()
		yv, yerr := y.Version()
		if xv != yv || xerr != nil || yerr != nil {
			return fmt.Sprintf("node %s: version %s (%v), want %s (%v)", id, yv, yerr, xv, xerr)
		}
		for _, l := range [][2][]proto.Message{
			{msgs(x.Clusters), msgs(y.Clusters)}, {msgs(x.Listeners), msgs(y.Listeners)},
			{msgs(x.Routes), msgs(y.Routes)}, {msgs(x.Secrets), msgs(y.Secrets)},
		} {
			if len(l[0]) != len(l[1]) {
				return fmt.Sprintf("node %s: %d resources, want %d", id, len(l[1]), len(l[0]))
			}
			for i := range l[0] {
				if !proto.Equal(l[0][i], l[1][i]) {
					return fmt.Sprintf("node %s: %v\nwant %v", id, l[1][i], l[0][i])
				}
			}
		}
	}
	return ""
}

func msgs[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

// TestMemoReusesUnchangedServices: after a one-service edit, the other
// services' clusters, secrets and route tables are the very messages of the last Render
// (delivery keys its own memos by identity), and the edited one's are new.
func TestMemoReusesUnchangedServices(t *testing.T) {
	// b trusts a CA of its own: a CA secret is shared by content, and the
	// node lists the first service's message for it.
	bTLS := func() *model.TLS { t := tlsSecured(); t.CA = fakeClientCert; return t }
	a := withTLS(svc("a", "http", 80, ep("10.0.0.1", 80)), tlsSecured())
	b := withTLS(svc("b", "tcp", 81, ep("10.0.0.2", 81)), bTLS())
	c := svc("c", "http", 82, ep("10.0.0.3", 82))
	memo := &Memo{}
	opts := Options{RoutesVia: RoutesADS}
	first, err := memo.Render(world(a, b, c), opts)
	if err != nil {
		t.Fatal(err)
	}
	a2 := withTLS(svc("a", "http", 80, ep("10.0.0.1", 8080)), tlsSecured())
	b2 := withTLS(svc("b", "tcp", 81, ep("10.0.0.2", 81)), bTLS())
	c2 := svc("c", "http", 82, ep("10.0.0.3", 82))
	second, err := memo.Render(world(a2, b2, c2), opts)
	if err != nil {
		t.Fatal(err)
	}
	n1, n2 := onlyNode(t, first), onlyNode(t, second)
	byName := func(n *Node) map[string]proto.Message {
		m := map[string]proto.Message{}
		for _, c := range n.Clusters {
			m["cluster "+c.Name] = c
		}
		for _, s := range n.Secrets {
			m["secret "+s.Name] = s
		}
		for _, rc := range n.Routes {
			m["route table "+rc.Name] = rc
		}
		return m
	}
	old, cur := byName(n1), byName(n2)
	for _, name := range []string{"cluster " + b.ClusterName(), "secret " + caSecretName(b), "route table " + c.ClusterName()} {
		if old[name] == nil || old[name] != cur[name] {
			t.Errorf("%s: rendered again, want the last Render's message", name)
		}
	}
	if old["cluster "+a.ClusterName()] == cur["cluster "+a.ClusterName()] {
		t.Errorf("edited service's cluster is the old message")
	}
	if version(t, n1) == version(t, n2) {
		t.Errorf("node version unchanged after an edit")
	}
}

// TestRenderInputCoversService fails when model.Service gains a field:
// decide whether its cluster or secrets depend on it (then add it to
// renderInput) or not (then list it here).
func TestRenderInputCoversService(t *testing.T) {
	notRendered := map[string]bool{"Conditions": true, "Broken": true}
	inputs := map[string]bool{}
	for _, f := range reflect.VisibleFields(reflect.TypeOf(renderInput{})) {
		inputs[strings.ToLower(f.Name)] = true
	}
	for _, f := range reflect.VisibleFields(reflect.TypeOf(model.Service{})) {
		if !notRendered[f.Name] && !inputs[strings.ToLower(f.Name)] {
			t.Errorf("model.Service.%s is neither in renderInput nor listed as not rendered", f.Name)
		}
	}
	tlsFields := reflect.TypeOf(model.TLS{}).NumField()
	if tlsFields != 12 {
		t.Errorf("model.TLS has %d fields, sameTLS compares 12: compare the new one", tlsFields)
	}
}

// TestMemoKeepsShapedClustersInTheSameWorld: with Kuma's default policies
// shaping every cluster, a second Render of the same World takes each node's
// shaped cluster from the memo without resolving its policies again (the
// same memo entry, the same message), and a World with other policies
// resolves them afresh.
func TestMemoKeepsShapedClustersInTheSameWorld(t *testing.T) {
	w := buildPolicyCase(t, filepath.Join("testdata", "policies", "defaults.input.yaml"))
	memo := &Memo{}
	first, err := memo.Render(w, Options{})
	if err != nil {
		t.Fatal(err)
	}
	before := maps.Clone(memo.shaped)
	shapedOnes := 0
	for _, e := range before {
		if e.vkey.base != nil {
			shapedOnes++
		}
	}
	if shapedOnes == 0 {
		t.Fatal("no cluster shaped by a policy: the test checks nothing")
	}
	second, err := memo.Render(w, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := outputDiff(first, second); d != "" {
		t.Fatal(d)
	}
	for k, e := range before {
		if memo.shaped[k] != e {
			t.Errorf("%v: shaped again in the same world", k)
		}
	}
	// Another World (its policies parsed anew): resolved again, same output.
	third, err := memo.Render(buildPolicyCase(t, filepath.Join("testdata", "policies", "defaults.input.yaml")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for k, e := range before {
		if memo.shaped[k] == e {
			t.Errorf("%v: taken from the memo in another world", k)
		}
	}
	fresh := mustRender(t, buildPolicyCase(t, filepath.Join("testdata", "policies", "defaults.input.yaml")), Options{})
	if d := outputDiff(fresh, third); d != "" {
		t.Error(d)
	}
}

// listenerFiles is a drop directory of three services (http, tcp,
// grpc) for the listener reuse tests.
func listenerFiles() *memoFiles {
	return &memoFiles{files: map[string]string{
		"api.yaml":  memoMES("api", "http", 8443, ""),
		"db.yaml":   memoMES("db", "tcp", 5432, ""),
		"rpc.yaml":  memoMES("rpc", "grpc", 9000, ""),
		"mesh.yaml": "type: Mesh\nname: default\n",
	}, parsed: map[string][]resource.Object{}, by: map[string]string{}}
}

// withParallelMin runs f with parallelMin at min, so filters are built on
// the node (serial) or on scratch nodes (parallel).
func withParallelMin(t *testing.T, min int, f func(t *testing.T)) {
	old := parallelMin
	parallelMin = min
	defer func() { parallelMin = old }()
	f(t)
}

func chainNamed(l *listenerv3.Listener, name string) *listenerv3.FilterChain {
	for _, c := range l.FilterChains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestMemoKeepsTheListenerThroughAnEndpointEdit: an edit of one service's
// endpoint does not show in its filters (they name its cluster), so the
// next Render hands out the very same transparent and HTTP proxy listener,
// the same filters slice for the service, and its route table, while the
// config changed elsewhere (the service's cluster). Also where the filters
// are not reused by their inputs (an access log, an mTLS mesh).
func TestMemoKeepsTheListenerThroughAnEndpointEdit(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		mtls  bool
		node  string
	}{
		{name: "plain", node: DefaultNodeID},
		{name: "MeshAccessLog", node: DefaultNodeID, files: map[string]string{
			"log.yaml": "type: MeshAccessLog\nname: log\nmesh: default\nspec:\n  targetRef: {kind: Mesh}\n  to:\n    - targetRef: {kind: Mesh}\n      default:\n        backends: [{type: File, file: {path: /var/log/mesh.log}}]\n",
		}},
		{name: "mesh mTLS", mtls: true, node: "default.web", files: map[string]string{
			"mesh.yaml":   "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends: [{name: ca-1, type: builtin}]\nrouting: {zoneEgress: true}\n",
			"egress.yaml": "type: ZoneEgress\nname: egress-1\nnetworking: {address: 127.0.0.2, port: 10002}\n",
			"dp.yaml":     "type: Dataplane\nmesh: default\nname: web\nnetworking:\n  address: 127.0.0.1\n",
		}},
	}
	for _, tc := range cases {
		for _, pm := range []int{math.MaxInt, 1} {
			t.Run(fmt.Sprintf("%s/parallelMin=%d", tc.name, pm), func(t *testing.T) {
				withParallelMin(t, pm, func(t *testing.T) {
					f := listenerFiles()
					maps.Copy(f.files, tc.files)
					opts := Options{RoutesVia: RoutesADS, HTTPProxyListen: "127.0.0.1:15080"}
					memo := &Memo{}
					first, err := memo.Render(f.world(t, tc.mtls), opts)
					if err != nil {
						t.Fatal(err)
					}
					f.files["api.yaml"] = memoMES("api", "http", 9443, "")
					w := f.world(t, tc.mtls)
					second, err := memo.Render(w, opts)
					if err != nil {
						t.Fatal(err)
					}
					if d := outputDiff(mustRender(t, f.world(t, tc.mtls), opts), second); d != "" {
						t.Fatalf("with the memo: %s", d)
					}
					if outputDiff(first, second) == "" {
						t.Fatal("the edit changed nothing in the config (the test tests nothing)")
					}
					n1, n2 := first.Nodes[tc.node], second.Nodes[tc.node]
					if n1 == nil || n2 == nil {
						t.Fatalf("no node %s in %v", tc.node, second.NodeIDs())
					}
					api := w.Services[0]
					if api.Name != "api" {
						t.Fatalf("first service is %s, want api", api.Name)
					}
					cluster := api.ClusterName()
					for _, name := range []string{TransparentListenerName, HTTPProxyListenerName} {
						if l1, l2 := listenerByName(t, n1, name), listenerByName(t, n2, name); l1 != l2 {
							t.Errorf("%s: a new listener, want the last Render's", name)
						}
					}
					c1 := chainNamed(listenerByName(t, n1, TransparentListenerName), cluster)
					if c1 == nil || len(c1.Filters) == 0 {
						t.Fatalf("no chain %s", cluster)
					}
					kept := memo.filters[filterKey{node: n2.ID, cluster: cluster}]
					if kept == nil || len(kept.filters) == 0 || &kept.filters[0] != &c1.Filters[0] {
						t.Errorf("the memo's filters of %s are not the last Render's slice", cluster)
					}
					routes := func(n *Node) proto.Message {
						for _, rc := range n.Routes {
							if rc.Name == cluster {
								return rc
							}
						}
						t.Fatalf("no route table %s", cluster)
						return nil
					}
					if routes(n1) != routes(n2) {
						t.Errorf("route table %s: rendered again, want the last Render's", cluster)
					}
				})
			})
		}
	}
}

// TestMemoRebuildsAChangedListener edits what the transparent listener is
// assembled from, one at a time, each followed by an endpoint edit (which
// keeps the listener): every change gives a new listener, equal to a fresh
// Render's and different from the last one.
func TestMemoRebuildsAChangedListener(t *testing.T) {
	withParallelMin(t, 1, func(t *testing.T) {
		f := listenerFiles()
		vips := map[string]netip.Addr{} // set over the allocator's
		build := func() *model.World {
			w := f.world(t, false)
			for _, s := range w.Services {
				if a, ok := vips[s.Name]; ok {
					s.VIP = a
				}
			}
			return w
		}
		port := 9000
		endpoint := func(*Options) {
			port++
			f.files["api.yaml"] = memoMES("api", "http", port, "")
		}
		steps := []struct {
			name string
			edit func(*Options)
		}{
			{name: "start", edit: func(*Options) {}},
			{name: "VIP", edit: func(*Options) { vips["db"] = netip.MustParseAddr("241.0.0.9") }},
			{name: "service added", edit: func(*Options) { f.files["web.yaml"] = memoMES("web", "http", 80, "") }},
			{name: "service removed", edit: func(*Options) { delete(f.files, "web.yaml") }},
			{name: "match port", edit: func(*Options) {
				f.files["db.yaml"] = strings.Replace(memoMES("db", "tcp", 5432, ""), "port: 443,", "port: 5432,", 1)
			}},
			{name: "MeshTrafficPermission deny", edit: func(*Options) {
				f.files["mtp.yaml"] = "type: MeshTrafficPermission\nname: no-db\nmesh: default\nspec:\n  targetRef: {kind: MeshExternalService, name: db}\n  from:\n    - targetRef: {kind: Mesh}\n      default: {action: Deny}\n"
			}},
			{name: "Options.RoutesVia", edit: func(o *Options) { o.RoutesVia = RoutesADS }},
			{name: "Options.RoutesVia back", edit: func(o *Options) { o.RoutesVia = RoutesInline }},
		}
		memo := &Memo{}
		var opts Options
		var last *listenerv3.Listener
		render := func(name string, edit func(*Options), kept bool) {
			t.Helper()
			edit(&opts)
			fresh, err := Render(build(), opts)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got, err := memo.Render(build(), opts)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if d := outputDiff(fresh, got); d != "" {
				t.Fatalf("%s: with the memo: %s", name, d)
			}
			l := listenerByName(t, onlyNode(t, got), TransparentListenerName)
			switch {
			case last == nil:
			case kept && l != last:
				t.Errorf("%s: a new listener, want the last Render's", name)
			case !kept && l == last:
				t.Errorf("%s: the last Render's listener, want a new one", name)
			case !kept && proto.Equal(l, last):
				t.Errorf("%s: the listener did not change (the step tests nothing)", name)
			}
			last = l
		}
		for _, st := range steps {
			render(st.name, st.edit, false)
			render(st.name+", then an endpoint", endpoint, true)
		}
	})
}

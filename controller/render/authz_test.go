package render

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	dmhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/dynamic_modules/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
	"github.com/meshext/meshext/plugin/envoytest"
)

func mtp(name string, target *resource.TargetRef, fromKind, fromName, action string) *resource.MeshTrafficPermission {
	return &resource.MeshTrafficPermission{
		Meta: resource.Meta{Kind: resource.KindMeshTrafficPermission, Mesh: "default", Name: name},
		Spec: resource.MeshTrafficPermissionSpec{TargetRef: target, From: []resource.TrafficPermFrom{{
			TargetRef: resource.TargetRef{Kind: fromKind, Name: fromName},
			Default:   resource.TrafficPermConf{Action: action},
		}}},
	}
}

func toMES(name string) *resource.TargetRef {
	return &resource.TargetRef{Kind: resource.RefMeshExternalService, Name: name}
}

// authzWorld: Dataplane web (tags version=v1) with outbounds to an HTTP and a
// TCP MES; web may not reach mes-tcp.
func authzWorld() *model.World {
	h := svc("mes-http", "http", 80, ep("httpbin.org", 80))
	h.Hostnames = []string{"mes-http.svc.meshext.local"}
	tc := svc("mes-tcp", "tcp", 4242, ep("10.0.0.7", 4242))
	tc.Hostnames = []string{"mes-tcp.svc.meshext.local"}
	g := svc("mes-grpc", "grpc", 9000, ep("10.0.0.8", 9000))
	g.Hostnames = []string{"mes-grpc.svc.meshext.local"}
	w := world(h, tc, g)
	w.Permissions = []*resource.MeshTrafficPermission{
		mtp("deny-web-tcp", toMES("mes-tcp"), resource.RefMeshService, "web", resource.ActionDeny),
		mtp("shadow-grpc", toMES("mes-grpc"), resource.RefMesh, "", resource.ActionAllowWithShadowDeny),
	}
	w.Dataplanes = []*resource.Dataplane{{
		Meta: resource.Meta{Kind: resource.KindDataplane, Mesh: "default", Name: "web-1"},
		Networking: resource.DataplaneNetworking{
			Address: "127.0.0.1",
			Inbound: []resource.Inbound{{Port: 16380, Tags: map[string]string{"kuma.io/service": "web", "version": "v1"}}},
			Outbound: []resource.Outbound{
				{Port: 8080, BackendRef: &resource.BackendRef{Kind: "MeshExternalService", Name: "mes-http"}},
				{Port: 8081, BackendRef: &resource.BackendRef{Kind: "MeshExternalService", Name: "mes-tcp"}},
			},
			TransparentProxying: &resource.TransparentProxying{RedirectPortOutbound: 15102},
		},
	}}
	return w
}

// authzDenyHTTPWorld is authzWorld where web may not reach mes-http either.
func authzDenyHTTPWorld() *model.World {
	w := authzWorld()
	w.Permissions = append(w.Permissions, mtp("deny-web-http", toMES("mes-http"), resource.RefMeshService, "web", resource.ActionDeny))
	return w
}

// authzGoldenCases show each authorization rendering; they are rendered,
// compared and validated like goldenCases.
var authzGoldenCases = []goldenCase{
	{name: "authz-plugin-stock-http-proxy", opts: Options{Plugin: PluginOn, HTTPProxyListen: "127.0.0.1:15080"}, world: authzWorld},
	{name: "authz-plugin-contrib-library-path", opts: Options{Flavor: FlavorContrib, Plugin: "/opt/meshext/libmeshext-golang.so", HTTPProxyListen: "127.0.0.1:15080"}, world: authzWorld},
	{name: "authz-native-forbid-by-default", opts: Options{Plugin: PluginOff, HTTPProxyListen: "127.0.0.1:15080"}, world: func() *model.World {
		w := authzWorld()
		w.Meshes["default"] = &resource.Mesh{Meta: resource.Meta{Kind: resource.KindMesh, Name: "default"},
			Routing: &resource.MeshRouting{DefaultForbidMeshExternalServiceAccess: true}}
		w.Permissions = append(w.Permissions, mtp("allow-web-http", toMES("mes-http"), resource.RefMeshService, "web", resource.ActionAllow))
		return w
	}},
	// meshext run's delivery: the route tables through RDS (ADS, files),
	// where a revoked permission reaches open connections.
	{name: "authz-routes-ads", opts: Options{Plugin: PluginOn, RoutesVia: RoutesADS}, world: authzDenyHTTPWorld},
	{name: "authz-routes-file", opts: Options{Plugin: PluginOff, RoutesVia: RoutesFile, RoutesDir: "/var/run/meshext/xds"}, world: authzDenyHTTPWorld},
	{name: "authz-default-node-proxy", opts: Options{Plugin: PluginOn, HTTPProxyListen: "127.0.0.1:15080"}, world: func() *model.World {
		w := authzWorld()
		w.Dataplanes = nil
		return w
	}},
}

func TestAuthzGoldenCases(t *testing.T) {
	for _, c := range authzGoldenCases {
		t.Run(c.name, func(t *testing.T) {
			w := c.world()
			out := mustRender(t, w, c.opts)
			golden(t, filepath.Join("testdata", c.name+".golden.json"), snapshot(t, w, out))
		})
	}
}

// moduleDir builds libmeshext.so once per test binary, so validation can
// load the stock flavor's dynamic module.
func moduleDir(t testing.TB) string { return envoytest.TestModuleDir(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	envoytest.RemoveTestModule()
	os.Exit(code)
}

func TestEnvoyValidatesAuthzCases(t *testing.T) {
	envoy := testenv.Envoy(t)
	for _, c := range authzGoldenCases {
		if c.opts.Flavor == FlavorContrib {
			// The stock binary has no envoy.filters.http.golang.
			t.Run(c.name, func(t *testing.T) { contribValidate(t, mustRender(t, c.world(), c.opts), c.opts.Plugin) })
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			if c.opts.pluginOn() {
				t.Setenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", moduleDir(t))
				t.Setenv("GODEBUG", "cgocheck=0")
			}
			envoyValidate(t, envoy, mustRender(t, c.world(), c.opts))
		})
	}
}

// filterConfigOf decodes the meshext filter config of an HCM filter list.
func filterConfigOf(t *testing.T, hcm *hcmv3.HttpConnectionManager) *egress.FilterConfig {
	t.Helper()
	for _, f := range hcm.HttpFilters {
		if f.Name != "envoy.filters.http.dynamic_modules" {
			continue
		}
		dm := unpackDynamicModule(t, f)
		var s wrapperspb.StringValue
		if err := dm.FilterConfig.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		var fc egress.FilterConfig
		if err := json.Unmarshal([]byte(s.Value), &fc); err != nil {
			t.Fatal(err)
		}
		return &fc
	}
	t.Fatal("no meshext filter")
	return nil
}

func listenerByName(t *testing.T, n *Node, name string) *listenerv3.Listener {
	t.Helper()
	for _, l := range n.Listeners {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no listener %s", name)
	return nil
}

func hcmOf(t *testing.T, f *listenerv3.Filter) *hcmv3.HttpConnectionManager {
	t.Helper()
	var h hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	return &h
}

func TestAuthzSourceAndDecisions(t *testing.T) {
	w := authzWorld()
	n := onlyNode(t, mustRender(t, w, Options{Plugin: PluginOn, HTTPProxyListen: "127.0.0.1:15080"}))

	// Allowed, decided at render time: no authorization filter at all.
	out := listenerByName(t, n, "outbound:127.0.0.1:8080")
	if fs := hcmOf(t, out.FilterChains[0].Filters[0]).HttpFilters; len(fs) != 1 || fs[0].Name != "envoy.filters.http.router" {
		t.Errorf("allowed outbound's HTTP filters = %v, want the router only", fs)
	}

	// A shadow denial keeps the filter (its metadata, counter and log):
	// one service as default, the Dataplane as source.
	ws := authzWorld()
	ws.Permissions = append(ws.Permissions, mtp("shadow-web-http", toMES("mes-http"), resource.RefMeshService, "web", resource.ActionAllowWithShadowDeny))
	out = listenerByName(t, onlyNode(t, mustRender(t, ws, Options{Plugin: PluginOn})), "outbound:127.0.0.1:8080")
	fc := filterConfigOf(t, hcmOf(t, out.FilterChains[0].Filters[0]))
	want := core.Identity{Mesh: "default", Service: "web", Tags: map[string]string{"version": "v1"}}
	if fc.Source.Service != want.Service || fc.Source.Mesh != want.Mesh || fc.Source.Tags["version"] != "v1" || len(fc.Source.Tags) != 1 {
		t.Errorf("source = %+v, want %+v", fc.Source, want)
	}
	cluster := w.Service("default", "mes-http").ClusterName()
	if fc.DefaultService != "mes-http" || len(fc.Services) != 1 || fc.Services[0].Cluster != cluster || fc.TableKey != "meshext:"+cluster {
		t.Errorf("outbound filter config = %+v", fc)
	}

	// Denied at render time: no filter, one route answering 403 with the
	// filter's body and the decision as route metadata.
	for _, plugin := range []string{PluginOn, PluginOff} {
		wd := authzWorld()
		wd.Permissions = append(wd.Permissions, mtp("deny-web-http", toMES("mes-http"), resource.RefMeshService, "web", resource.ActionDeny))
		h := hcmOf(t, listenerByName(t, onlyNode(t, mustRender(t, wd, Options{Plugin: plugin})), "outbound:127.0.0.1:8080").FilterChains[0].Filters[0])
		if len(h.HttpFilters) != 1 {
			t.Errorf("plugin %s: denied outbound's HTTP filters = %v, want the router only", plugin, h.HttpFilters)
		}
		routes := h.GetRouteConfig().VirtualHosts[0].Routes
		if len(routes) != 1 || routes[0].GetDirectResponse().GetStatus() != 403 {
			t.Fatalf("plugin %s: denied routes = %v", plugin, routes)
		}
		body := routes[0].GetDirectResponse().GetBody().GetInlineString()
		if wantBody := `meshext: access to MeshExternalService "mes-http" in mesh "default" from "web" denied by MeshTrafficPermission "deny-web-http"` + "\n"; body != wantBody {
			t.Errorf("plugin %s: deny body %q, want %q", plugin, body, wantBody)
		}
		md := routes[0].GetMetadata().GetFilterMetadata()[egress.MetadataNamespace].GetFields()
		if md[egress.MetaAction].GetStringValue() != "Deny" || md[egress.MetaPolicy].GetStringValue() != "deny-web-http" || md[egress.MetaSource].GetStringValue() != "web" {
			t.Errorf("plugin %s: deny route metadata %v", plugin, md)
		}
	}

	// The proxy listener knows every HTTP MES, has no default (404) and routes by header.
	px := listenerByName(t, n, HTTPProxyListenerName)
	h := hcmOf(t, px.FilterChains[0].Filters[0])
	pfc := filterConfigOf(t, h)
	var names []string
	for _, s := range pfc.Services {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "mes-http,mes-grpc" || pfc.DefaultService != "" {
		t.Errorf("proxy services %v default %q", names, pfc.DefaultService)
	}
	if len(pfc.Policies) != 1 || pfc.Policies[0].Name != "shadow-grpc" {
		t.Errorf("proxy policies = %+v, want only shadow-grpc (deny-web-tcp is about a TCP MES)", pfc.Policies)
	}
	rt := h.GetRouteConfig().VirtualHosts[0].Routes[0]
	if rt.GetRoute().GetClusterHeader() != egress.DefaultClusterHeader || rt.RequestHeadersToRemove[0] != egress.DefaultClusterHeader {
		t.Errorf("proxy route = %v", rt)
	}

	// TCP denied at render time: no RBAC filter, and tcp_proxy never
	// reaches the MES (the connection is closed).
	tcp := listenerByName(t, n, "outbound:127.0.0.1:8081")
	fs := tcp.FilterChains[0].Filters
	if len(fs) != 1 || fs[0].Name != "envoy.filters.network.tcp_proxy" {
		t.Fatalf("tcp filters = %v", fs)
	}
	var tp tcpproxyv3.TcpProxy
	if err := fs[0].GetTypedConfig().UnmarshalTo(&tp); err != nil {
		t.Fatal(err)
	}
	if tp.GetCluster() != DeniedCluster {
		t.Errorf("denied tcp_proxy cluster = %q, want %q", tp.GetCluster(), DeniedCluster)
	}
	found := false
	for _, c := range n.Clusters {
		found = found || c.Name == DeniedCluster
	}
	if !found {
		t.Errorf("no %s cluster on the node", DeniedCluster)
	}
	// Without a denied tcp service there is no such cluster.
	w2 := authzWorld()
	w2.Permissions = nil
	for _, c := range onlyNode(t, mustRender(t, w2, Options{})).Clusters {
		if c.Name == DeniedCluster {
			t.Errorf("%s rendered with nothing denied", DeniedCluster)
		}
	}
}

func TestAuthzOptionErrors(t *testing.T) {
	for _, o := range []Options{
		{Flavor: "distroless"},
		{Plugin: "/x/libmeshext-golang.so"}, // a library path needs contrib
		{HTTPProxyListen: "localhost:15080"},
	} {
		if _, err := Render(world(), o); err == nil {
			t.Errorf("Render(%+v) = nil error", o)
		}
	}
}

func TestSourceIdentityFallbacks(t *testing.T) {
	if id := SourceIdentity(nil, "m"); id.Mesh != "m" || id.Service != DefaultNodeService {
		t.Errorf("default node source = %+v", id)
	}
	dp := &resource.Dataplane{Meta: resource.Meta{Mesh: "m", Name: "dp-no-inbound"}}
	if id := SourceIdentity(dp, "ignored"); id.Mesh != "m" || id.Service != "dp-no-inbound" {
		t.Errorf("no-inbound source = %+v", id)
	}
}

func unpackDynamicModule(t *testing.T, f *hcmv3.HttpFilter) *dmhttpv3.DynamicModuleFilter {
	t.Helper()
	var dm dmhttpv3.DynamicModuleFilter
	if err := f.GetTypedConfig().UnmarshalTo(&dm); err != nil {
		t.Fatal(err)
	}
	return &dm
}

// With a policy set that allows some services and denies others, decided at
// render time, an allowed service's listener is exactly the one rendered
// without any policy: the data path the benchmark's (c) measures at defaults
// is the one a permitted caller gets under policies.
func TestAllowedListenerIsTheUnpolicedOne(t *testing.T) {
	plain := onlyNode(t, mustRender(t, authzWorld(), Options{Plugin: PluginOn}))
	w := authzWorld()
	w.Permissions = nil
	bare := onlyNode(t, mustRender(t, w, Options{Plugin: PluginOn}))
	w = authzWorld()
	w.Meshes["default"] = &resource.Mesh{Meta: resource.Meta{Kind: resource.KindMesh, Name: "default"},
		Routing: &resource.MeshRouting{DefaultForbidMeshExternalServiceAccess: true}}
	w.Permissions = append(w.Permissions, mtp("allow-web-http", toMES("mes-http"), resource.RefMeshService, "web", resource.ActionAllow))
	policed := onlyNode(t, mustRender(t, w, Options{Plugin: PluginOn}))
	for _, n := range []*Node{plain, policed} {
		got, want := listenerByName(t, n, "outbound:127.0.0.1:8080"), listenerByName(t, bare, "outbound:127.0.0.1:8080")
		if !proto.Equal(got, want) {
			t.Errorf("allowed outbound differs from the one without policies:\n%s\nwant\n%s", rawJSON(t, got), rawJSON(t, want))
		}
	}
	// And the denied tcp service's chain is the one thing that differs.
	if proto.Equal(listenerByName(t, policed, "outbound:127.0.0.1:8081"), listenerByName(t, bare, "outbound:127.0.0.1:8081")) {
		t.Error("denied tcp outbound rendered as if allowed")
	}
}

// Kuma's rules form is decided when rendering too: a rules policy on the
// MES that allows another SPIFFE ID only leaves the node's caller denied
// (rules default), one that allows it leaves no filter at all.
func TestRulesFormDecidedWhenRendering(t *testing.T) {
	rules := func(allow string) *resource.MeshTrafficPermission {
		return &resource.MeshTrafficPermission{
			Meta: resource.Meta{Kind: resource.KindMeshTrafficPermission, Mesh: "default", Name: "rules-http"},
			Spec: resource.MeshTrafficPermissionSpec{TargetRef: toMES("mes-http"), Rules: []resource.TrafficPermRule{{
				Default: resource.TrafficPermRuleConf{Allow: []resource.TrafficPermMatch{{SpiffeID: &resource.StringMatch{Type: resource.MatchExact, Value: allow}}}},
			}}},
		}
	}
	for _, c := range []struct {
		allow  string
		denied bool
	}{{"spiffe://default/web", false}, {"spiffe://default/other", true}} {
		w := authzWorld()
		w.Permissions = []*resource.MeshTrafficPermission{rules(c.allow)}
		h := hcmOf(t, listenerByName(t, onlyNode(t, mustRender(t, w, Options{Plugin: PluginOn})), "outbound:127.0.0.1:8080").FilterChains[0].Filters[0])
		if len(h.HttpFilters) != 1 {
			t.Errorf("rules allowing %s: HTTP filters %v, want the router only", c.allow, h.HttpFilters)
		}
		dr := h.GetRouteConfig().VirtualHosts[0].Routes[0].GetDirectResponse()
		if got := dr.GetStatus() == 403; got != c.denied {
			t.Errorf("rules allowing %s: denied %v, want %v", c.allow, got, c.denied)
		}
		if c.denied && !strings.Contains(dr.GetBody().GetInlineString(), `MeshTrafficPermission rules "rules-http"`) {
			t.Errorf("rules deny body %q", dr.GetBody().GetInlineString())
		}
	}
}

package render

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testpki"
)

// fakeIdentity stands in for an identity the meshca step issues.
func fakeIdentity(node, svc string) *model.Identity {
	return &model.Identity{Node: node, SPIFFEID: names.SPIFFEID("default", svc), CertPEM: fakeClientCert, KeyPEM: fakeClientKey}
}

// egressWorld is mesh "default" with mTLS, two ZoneEgresses, a Dataplane
// "web", and a service of every protocol (tcp plain and with client
// certificate, http over TLS, grpc), authorized by a rules policy that
// lets web through and a from[] policy on the mesh.
func egressWorld() *model.World {
	w := world(
		svc("mes-tcp", "tcp", 4242, ep("127.0.0.11", 4242)),
		withTLS(svc("mes-tcp-mtls", "tcp", 4244, ep("tcpbin.com", 4244)), tlsWith(func(t *model.TLS) {
			t.ServerName = "tcpbin.com"
			t.ClientCert, t.ClientKey, t.ClientCertSource = fakeClientCert, fakeClientKey, "secret:client"
		})),
		withTLS(svc("mes-https", "http", 443, ep("httpbin.org", 443)), tlsWith(func(t *model.TLS) { t.ServerName = "httpbin.org" })),
		svc("mes-grpc", "grpc", 9000, ep("grpcbin.test.k6.io", 9000)),
	)
	for _, s := range w.Services {
		s.SNI = names.SNI(s.Name, s.Mesh, "mes", s.Port)
	}
	w.Meshes["default"] = &resource.Mesh{Meta: resource.Meta{Kind: resource.KindMesh, Name: "default", Mesh: "default"}}
	w.MTLS = map[string]*model.MeshMTLS{"default": {
		Mesh: "default", Backend: resource.CABackend{Name: "ca-1", Type: resource.CABuiltin}, CACert: fakeCA,
		Identities: map[string]*model.Identity{
			"default.web": fakeIdentity("default.web", "web"),
			".egress-1":   fakeIdentity(".egress-1", names.ZoneEgressService),
			".egress-2":   fakeIdentity(".egress-2", names.ZoneEgressService),
		},
	}}
	w.ZoneEgresses = []*resource.ZoneEgress{
		{Meta: resource.Meta{Kind: resource.KindZoneEgress, Name: "egress-1"}, ZoneEgressSpec: resource.ZoneEgressSpec{Networking: resource.ZoneEgressNetworking{
			Address: "127.0.0.2", Port: 10002, Admin: &resource.Admin{Port: 9902}}}},
		{Meta: resource.Meta{Kind: resource.KindZoneEgress, Name: "egress-2"}, ZoneEgressSpec: resource.ZoneEgressSpec{Networking: resource.ZoneEgressNetworking{
			Address: "127.0.0.3", Port: 10002, Admin: &resource.Admin{Port: 9903}}}},
	}
	w.Dataplanes = []*resource.Dataplane{{
		Meta: resource.Meta{Kind: resource.KindDataplane, Mesh: "default", Name: "web"},
		Networking: resource.DataplaneNetworking{
			Address: "127.0.0.1",
			Inbound: []resource.Inbound{{Port: 16379, ServicePort: 26379, Tags: map[string]string{"kuma.io/service": "web"}}},
			Outbound: []resource.Outbound{
				{Port: 8080, BackendRef: &resource.BackendRef{Kind: "MeshExternalService", Name: "mes-https"}},
			},
		},
	}}
	mesh := &resource.TargetRef{Kind: resource.RefMesh}
	w.Permissions = []*resource.MeshTrafficPermission{
		{Meta: resource.Meta{Kind: resource.KindMeshTrafficPermission, Mesh: "default", Name: "allow-web"},
			Spec: resource.MeshTrafficPermissionSpec{TargetRef: mesh, Rules: []resource.TrafficPermRule{{Default: resource.TrafficPermRuleConf{
				Allow: []resource.TrafficPermMatch{{SpiffeID: &resource.StringMatch{Type: resource.MatchExact, Value: "spiffe://default/web"}}},
				Deny:  []resource.TrafficPermMatch{{SpiffeID: &resource.StringMatch{Type: resource.MatchPrefix, Value: "spiffe://default/legacy"}}},
			}}}}},
		// Selects egress-2 only: there, mes-grpc allows anyone.
		{Meta: resource.Meta{Kind: resource.KindMeshTrafficPermission, Mesh: "default", Name: "grpc-open-on-egress-2"},
			Spec: resource.MeshTrafficPermissionSpec{TargetRef: &resource.TargetRef{Kind: resource.RefDataplane, Name: "egress-2"},
				Rules: []resource.TrafficPermRule{{Default: resource.TrafficPermRuleConf{
					Allow: []resource.TrafficPermMatch{{SNI: &resource.StringMatch{Type: resource.MatchExact, Value: names.SNI("mes-grpc", "default", "mes", 9000)}}},
				}}}}},
	}
	return w
}

// TestGoldenEgress renders both sides of the egress path: the workload
// "default.web" (clusters to the egresses, no authorization) and the
// egresses ".egress-1" and ".egress-2" (SNI chains, client certificates,
// authorization, upstream TLS origination), with native RBAC, with the Go
// filter, and with SDS files.
func TestGoldenEgress(t *testing.T) {
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"egress-native-rbac", Options{Plugin: PluginOff}},
		{"egress-go-filter-stock", Options{Plugin: PluginOn, HTTPProxyListen: "127.0.0.1:15080"}},
		{"egress-secrets-via-file", Options{Plugin: PluginOff, SecretsVia: SecretsFile, SecretsDir: "/var/run/meshext/xds/sds"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := egressWorld()
			out := mustRender(t, w, c.opts)
			if len(out.Nodes) != 3 {
				t.Fatalf("nodes %v", out.NodeIDs())
			}
			golden(t, filepath.Join("testdata", c.name+".golden.json"), snapshot(t, w, out))
		})
	}
}

// Without Dataplanes the default node has no identity: an mTLS mesh's
// services are left out there (and still served by the egresses).
func TestGoldenEgressDefaultNode(t *testing.T) {
	w := egressWorld()
	w.Dataplanes = nil
	delete(w.MTLS["default"].Identities, "default.web")
	out := mustRender(t, w, Options{})
	golden(t, filepath.Join("testdata", "egress-default-node-has-no-identity.golden.json"), snapshot(t, w, out))
}

// TestGoldenSeedExamplesThroughEgress renders the seed's examples with
// examples-egress/ (mesh mTLS, ZoneEgress egress-1, a rules policy): the
// seed's Dataplane "default.example" and the egress ".egress-1", as
// `make run EGRESS=1` serves them. Identities are fixed stand-ins (the
// meshca step issues real ones).
func TestGoldenSeedExamplesThroughEgress(t *testing.T) {
	w := buildExamples(t, examplesDir(t), filepath.Join(examplesDir(t), "..", "examples-egress"))
	standInIdentities(t, w, "example")
	out := mustRender(t, w, Options{Plugin: PluginOn, HTTPProxyListen: "127.0.0.1:15080"})
	if len(out.Warnings) > 0 {
		t.Errorf("warnings: %v", out.Warnings)
	}
	golden(t, filepath.Join("testdata", "example-all-through-egress.golden.json"), snapshot(t, w, out))
}

// standInIdentities gives mesh default's CA and the identities of
// Dataplane dp and ZoneEgress egress-1 fixed stand-ins (the meshca step
// issues real ones).
func standInIdentities(t *testing.T, w *model.World, dp string) *model.MeshMTLS {
	t.Helper()
	mt := w.MTLS["default"]
	if mt == nil {
		t.Fatal("mesh default does not enable mTLS")
	}
	mt.CACert = fakeCA
	mt.Identities["default."+dp] = fakeIdentity("default."+dp, dp)
	mt.Identities[".egress-1"] = fakeIdentity(".egress-1", names.ZoneEgressService)
	return mt
}

// egressPoliciesWorld is testdata/egress-policies.input.yaml with
// identities for web and egress-1: stand-ins for the golden file, or real
// ones (issued by a test CA) for Envoy to parse.
func egressPoliciesWorld(t *testing.T, real bool) *model.World {
	t.Helper()
	w := buildExamples(t, filepath.Join("testdata", "egress-policies.input.yaml"))
	mt := standInIdentities(t, w, "web")
	if real {
		ca, err := testpki.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		mt.CACert = ca.CertPEM
		for node, id := range mt.Identities {
			leaf, err := ca.Issue(testpki.URIs(id.SPIFFEID), testpki.ClientAuth(), testpki.ServerAuth())
			if err != nil {
				t.Fatal(err)
			}
			mt.Identities[node] = &model.Identity{Node: node, SPIFFEID: id.SPIFFEID, CertPEM: leaf.CertPEM, KeyPEM: leaf.KeyPEM}
		}
	}
	return w
}

// TestGoldenEgressPolicies renders Kuma's policies through a ZoneEgress:
// the route side on the workload, the cluster side on the egress's
// upstream clusters (see the input's comment), into a golden file that a
// real Envoy accepts; the assertions below spell out what the golden
// shows.
func TestGoldenEgressPolicies(t *testing.T) {
	w := egressPoliciesWorld(t, false)
	out := mustRender(t, w, Options{Plugin: PluginOff})
	golden(t, filepath.Join("testdata", "egress-policies.golden.json"), snapshot(t, w, out))

	web, egress := out.Nodes["default.web"], out.Nodes[".egress-1"]
	if web == nil || egress == nil {
		t.Fatalf("nodes %v", out.NodeIDs())
	}
	api := w.Service("default", "api").ClusterName()
	db := w.Service("default", "db").ClusterName()

	// Workload: clusters to the egress keep the failover settings only.
	for _, name := range []string{api, db} {
		c := clusterNamed(t, web, name)
		if c.CircuitBreakers != nil || len(c.HealthChecks) > 0 || c.LbPolicy != clusterv3.Cluster_ROUND_ROBIN {
			t.Errorf("workload cluster %s carries cluster-side policies: %v", name, c)
		}
		if c.GetOutlierDetection().GetConsecutive_5Xx().GetValue() != defaultOutlierDetection().GetConsecutive_5Xx().GetValue() {
			t.Errorf("workload cluster %s lost the egress outlier detection", name)
		}
	}
	// Egress: the same names, the real upstreams, shaped by the policies.
	ac := clusterNamed(t, egress, api)
	if th := ac.GetCircuitBreakers().GetThresholds(); len(th) != 1 || th[0].GetMaxConnections().GetValue() != 10 || th[0].GetMaxPendingRequests().GetValue() != 5 {
		t.Errorf("egress api thresholds %v", th)
	}
	if hc := ac.GetHealthChecks(); len(hc) != 1 || hc[0].GetHttpHealthCheck().GetPath() != "/health" {
		t.Errorf("egress api health checks %v", hc)
	}
	if ac.LbPolicy != clusterv3.Cluster_RING_HASH || ac.GetConnectTimeout().AsDuration() != 2*time.Second {
		t.Errorf("egress api lb %v connect timeout %v", ac.LbPolicy, ac.GetConnectTimeout().AsDuration())
	}
	if th := clusterNamed(t, egress, db).GetCircuitBreakers().GetThresholds(); len(th) != 1 || th[0].GetMaxConnections().GetValue() != 1024 {
		t.Errorf("egress db thresholds %v: want the mesh default (web-only-breaker selects web, not the egress)", th)
	}
	// Route backends: web may not call api-v2, and its split still leads
	// there; api-v2's chain on the egress denies it (native RBAC).
	routes := routesOf(t, listenerByName(t, web, "outbound:127.0.0.1:8080"))
	split := routes[len(routes)-1].GetRoute().GetWeightedClusters().GetClusters()
	if len(split) != 2 || split[1].Name != w.Service("default", "api-v2").ClusterName() {
		t.Errorf("web's split %v: want api and api-v2 (the egress decides)", split)
	}
	if rules := egressChainRBAC(t, egress, w.Service("default", "api-v2").SNI); rules == nil || len(rules.GetPolicies()) != 0 || rules.GetAction() != rbacconfigv3.RBAC_ALLOW {
		t.Errorf("api-v2's egress chain: want RBAC allowing nobody, got %v", rules)
	}
	found := false
	for _, warn := range out.Warnings {
		found = found || strings.Contains(warn, `URLRewrite hostname "canary.api.example.com" reaches only endpoints given by IP`)
	}
	if !found {
		t.Errorf("no warning about the URLRewrite hostname through the egress: %v", out.Warnings)
	}
}

// TestEnvoyValidatesEgressPolicies: both nodes of the egress-policies
// case are config a real Envoy accepts (the Go filter needs its module:
// see the e2e tests).
func TestEnvoyValidatesEgressPolicies(t *testing.T) {
	envoyValidate(t, testenv.Envoy(t), mustRender(t, egressPoliciesWorld(t, true), Options{Plugin: PluginOff, HTTPProxyListen: "127.0.0.1:15080"}))
}

func clusterNamed(t *testing.T, n *Node, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range n.Clusters {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("node %s has no cluster %s", n.ID, name)
	return nil
}

// routesOf is the route table of a listener's first chain's connection manager.
func routesOf(t *testing.T, l *listenerv3.Listener) []*routev3.Route {
	t.Helper()
	fs := l.GetFilterChains()[0].GetFilters()
	return hcmOf(t, fs[len(fs)-1]).GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
}

// egressChainRBAC is the native HTTP RBAC rules of the egress chain
// matched by sni.
func egressChainRBAC(t *testing.T, n *Node, sni string) *rbacconfigv3.RBAC {
	t.Helper()
	for _, l := range n.Listeners {
		for _, fc := range l.GetFilterChains() {
			if len(fc.GetFilterChainMatch().GetServerNames()) != 1 || fc.GetFilterChainMatch().GetServerNames()[0] != sni {
				continue
			}
			fs := fc.GetFilters()
			for _, hf := range hcmOf(t, fs[len(fs)-1]).GetHttpFilters() {
				var r rbachttpv3.RBAC
				if hf.GetTypedConfig().UnmarshalTo(&r) == nil {
					return r.GetRules()
				}
			}
		}
	}
	t.Fatalf("node %s: no chain with an HTTP RBAC filter for SNI %s", n.ID, sni)
	return nil
}

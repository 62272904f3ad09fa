package render

import (
	"path/filepath"
	"testing"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
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
	mt := w.MTLS["default"]
	if mt == nil {
		t.Fatal("examples-egress/mesh.yaml does not enable mTLS")
	}
	mt.CACert = fakeCA
	mt.Identities["default.example"] = fakeIdentity("default.example", "example")
	mt.Identities[".egress-1"] = fakeIdentity(".egress-1", names.ZoneEgressService)
	out := mustRender(t, w, Options{Plugin: PluginOn, HTTPProxyListen: "127.0.0.1:15080"})
	if len(out.Warnings) > 0 {
		t.Errorf("warnings: %v", out.Warnings)
	}
	golden(t, filepath.Join("testdata", "example-all-through-egress.golden.json"), snapshot(t, w, out))
}

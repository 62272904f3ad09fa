package names_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
)

// Kuma's published values (pkg/xds/envoy/tls/sni_test.go and the egress
// generator's golden, v2.14.3).
func TestSNIIsKumas(t *testing.T) {
	assert.Equal(t, "afce62f771ed74b78.example.9090.default.mes", names.SNI("example", "default", "mes", 9090))
	assert.Equal(t, "a45e197ed7825551b.meshexternalservice-1.9090.mesh-1.mes", names.SNI("meshexternalservice-1", "mesh-1", "mes", 9090))
	assert.Equal(t, "ae10a8071b8a8eeb8.backend.8080.demo.ms", names.SNI("backend", "demo", "ms", 8080))
	// Over 62 characters: cut to 62 plus "x"; the hash is of the whole names.
	long := strings.Repeat("a", 62) + "-qwe"
	mesh := strings.Repeat("b", 62) + "-qwe"
	got := names.SNI(long, mesh, "ms", 8080)
	assert.Equal(t, "."+strings.Repeat("a", 62)+"x.8080."+strings.Repeat("b", 62)+"x.ms", got[17:])
	assert.NotEqual(t, got, names.SNI(long+"2", mesh, "ms", 8080), "the hash keeps cut names apart")
	// Exactly 62 characters stay as they are.
	assert.Contains(t, names.SNI(strings.Repeat("c", 62), "m", "mes", 1), "."+strings.Repeat("c", 62)+".1.m.mes")
}

func TestMeshExternalServiceSNIUsesDisplayName(t *testing.T) {
	m := &resource.Meta{Name: "example-abc12", Mesh: "default", Labels: map[string]string{resource.LabelDisplayName: "example"}}
	assert.Equal(t, "afce62f771ed74b78.example.9090.default.mes", names.MeshExternalServiceSNI(m, 9090))
}

func TestZoneEgressNodeIDNeverMeetsADataplanes(t *testing.T) {
	assert.Equal(t, ".egress-1", names.ZoneEgressNodeID("egress-1"))
	// A ZoneEgress "default.web" and Dataplane web of mesh default.
	assert.NotEqual(t, names.NodeID("default", "web"), names.ZoneEgressNodeID("default.web"))
}

func TestIdentityNames(t *testing.T) {
	assert.Equal(t, "spiffe://default/zone-egress", names.SPIFFEID("default", names.ZoneEgressService))
	assert.Equal(t, "spiffe://default/", names.SPIFFEPrefix("default"))
	assert.Equal(t, "mesh_ca:secret:default", names.MeshCASecret("default"))
	assert.Equal(t, "identity_cert:secret:default:default.web", names.IdentitySecret("default", "default.web"))
	// Identity secrets of two nodes, or of one node in two meshes, differ;
	// none is a cluster secret or the CA secret.
	cluster := names.LegacyDestination("default", "web", "", "z", names.ExtSvcShortName, 80)
	all := []string{
		names.IdentitySecret("a", "b.c"), names.IdentitySecret("a.b", "c"), names.IdentitySecret("a", ".e"),
		names.IdentitySecret("b", ".e"), names.MeshCASecret("a"), names.MeshCASecret("b"),
		names.CASecret([]byte(cluster)), names.ClientSecret(cluster),
	}
	seen := map[string]bool{}
	for _, s := range all {
		assert.False(t, seen[s], "secret %q twice", s)
		seen[s] = true
	}
}

package names

import (
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/meshext/meshext/controller/resource"
)

// Names of Kuma's egress path: the ZoneEgress node id, the SNI a workload
// sends to reach one MeshExternalService through an egress, the SPIFFE
// identities of workloads and egresses, and the SDS secrets that carry the
// mesh CA and each node's identity.
//
// Injectivity:
//
//   - ZoneEgress node ids are kuma-dp's ".<name>": a ZoneEgress has no mesh,
//     and Kuma's proxy id is "<mesh>.<name>" with the mesh left empty. A
//     Dataplane's id starts with its (non-empty) mesh, so the two never meet,
//     and ZoneEgress names are unique. They take part in the node claims all
//     the same (model.Build), so a future change of form cannot fold silently.
//   - SNIs are Kuma's legacy form (see MeshExternalServiceSNI); they carry a
//     64-bit hash of display name and mesh, so two services meet only on a
//     hash collision, which Build reports.
//   - Secret names carry a ':' that no cluster name, node id or system CA
//     secret has (see names.go), and split back at their first two ':' (mesh
//     names have none).

// ZoneEgressNodeID is the Envoy node id of a ZoneEgress: kuma-dp's
// "<mesh>.<name>" with the empty mesh of a zone-scoped resource.
func ZoneEgressNodeID(name string) string { return "." + name }

// ZoneEgressService is the kuma.io/service of every ZoneEgress: the path of
// its SPIFFE ID in each mesh, spiffe://<mesh>/zone-egress (Kuma's
// mesh_proto.ZoneEgressServiceName).
const ZoneEgressService = "zone-egress"

// SPIFFEID is Kuma's workload identity of a service in a mesh:
// spiffe://<mesh>/<service>.
func SPIFFEID(mesh, service string) string { return "spiffe://" + mesh + "/" + service }

// SPIFFEPrefix is what every identity of mesh starts with.
func SPIFFEPrefix(mesh string) string { return "spiffe://" + mesh + "/" }

// MeshCASecret is the SDS secret holding a mesh CA's certificate, the trust
// anchor every mTLS peer of the mesh is validated against (Kuma's name).
func MeshCASecret(mesh string) string { return "mesh_ca:secret:" + mesh }

// IdentitySecret is the SDS secret holding node's certificate and key in
// mesh. Kuma names it "identity_cert:secret:<mesh>" on every node; meshext
// adds the node id because file delivery shares one SDS directory between
// nodes (controller/xds).
func IdentitySecret(mesh, node string) string { return "identity_cert:secret:" + mesh + ":" + node }

// sniLabelLimit is a DNS label's length limit; SNI parts longer than one
// label less one are cut and marked with "x" (Kuma's rule).
const sniLabelLimit = 63

// SNI is Kuma's legacy SNI of a resource of short type typ ("mes" for a
// MeshExternalService) on a port (Kuma's tls.SNIForResource without
// additional data): "a" (the format version), the 16 hex digits of the
// FNV-64a hash of "<name>;<mesh>;", then ".<name>.<port>.<mesh>.<typ>",
// where a name or mesh over 62 characters is cut to 62 and gets an "x".
func SNI(name, mesh, typ string, port uint32) string {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte{';'})
	h.Write([]byte(mesh))
	h.Write([]byte{';'})
	sum := strconv.FormatUint(h.Sum64(), 16)
	var b strings.Builder
	b.WriteString("a")
	b.WriteString(strings.Repeat("0", 16-len(sum)))
	b.WriteString(sum)
	for _, part := range []string{cutLabel(name), strconv.FormatUint(uint64(port), 10), cutLabel(mesh), typ} {
		b.WriteByte('.')
		b.WriteString(part)
	}
	return b.String()
}

func cutLabel(s string) string {
	if len(s) > sniLabelLimit-1 {
		return s[:sniLabelLimit-1] + "x"
	}
	return s
}

// MeshExternalServiceSNI is the SNI a workload sends to an egress for a
// MeshExternalService: SNI of its display name (kuma.io/display-name, else
// its name) in its mesh on match.port (0 when omitted), type "mes".
func MeshExternalServiceSNI(m *resource.Meta, port uint32) string {
	return SNI(m.DisplayName(), m.Mesh, "mes", port)
}

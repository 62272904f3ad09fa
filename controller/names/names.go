// Package names derives every identifier meshext builds from users' names:
// Envoy cluster names, Envoy node ids, SDS secret names and the file names of
// the xDS output directory. It is the only place such names are put
// together, so the rules that keep them apart live in one file.
//
// Injectivity, and what it rests on:
//
//   - MeshExternalService clusters carry Kuma's legacy destination name,
//     "<mesh>_<name>_<namespace>_<zone>_extsvc_<port>" (Kuma's
//     destinationname.ResolveLegacyFromKRI), which Kuma's dashboards parse.
//     Validation (controller/validate) lets no '_' into the name (a lowercase
//     RFC 1123 subdomain), the namespace and the zone (RFC 1123 labels); only
//     the mesh, the leftmost part, may hold '_' (Kuma's backward-compatible
//     mesh names). Reading such a name from the right therefore splits it
//     back into its parts: different parts, different names.
//   - A client certificate's secret is its cluster name plus "_client"
//     (cluster names end in a port number and hold no ':'). Trust anchors are
//     shared: "meshext_ca_<hex>" by content for an inline caCert,
//     "meshext_ca_secret:<mesh>:<secret>" for a caCert from a Secret (a
//     Secret name holds no ':'), "meshext_system_ca_<hex>" for a system
//     bundle. No two of these forms can meet.
//   - Node ids are Kuma's "<mesh>.<name>". Both parts may hold dots, so two
//     Dataplanes can fold (mesh "a.b" name "c", mesh "a" name "b.c"); so can
//     two services whose kuma.io/display-name labels agree. Claims finds
//     those before anything is rendered: the resource that held the
//     identifier first keeps it, the newcomer gets an error naming both.
//   - File names (PathElement) are injective for any string at all, validated
//     or not: every byte outside [a-z0-9_.-] is escaped, so "web/1" and
//     "web_1" land in different directories, and no name can climb out of
//     its directory or hide as a dot-file.
package names

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/meshext/meshext/controller/resource"
)

// ExtSvcShortName is Kuma's short name of the MeshExternalService type, the
// type part of its destination names.
const ExtSvcShortName = "extsvc"

// LegacyDestination is Kuma's legacy destination name: the Envoy cluster
// (and stat prefix) Kuma gives a destination of type shortName on a port.
func LegacyDestination(mesh, name, namespace, zone, shortName string, port uint32) string {
	var b strings.Builder
	b.Grow(len(mesh) + len(name) + len(namespace) + len(zone) + len(shortName) + 10)
	for _, part := range []string{mesh, name, namespace, zone, shortName} {
		b.WriteString(part)
		b.WriteByte('_')
	}
	b.WriteString(strconv.FormatUint(uint64(port), 10))
	return b.String()
}

// MeshExternalServiceCluster is the Envoy cluster of a MeshExternalService:
// Kuma's legacy destination name from its mesh, display name
// (kuma.io/display-name, else its name), k8s.kuma.io/namespace and
// kuma.io/zone labels, and match.port (0 when omitted: every port).
func MeshExternalServiceCluster(m *resource.Meta, port uint32) string {
	return LegacyDestination(m.Mesh, m.DisplayName(), m.Labels[resource.LabelNamespace], m.Labels[resource.LabelZone], ExtSvcShortName, port)
}

// NodeID is the Envoy node id of a Dataplane, as kuma-dp sets it.
func NodeID(mesh, name string) string { return mesh + "." + name }

// CASecret names the SDS secret holding a trust-anchor bundle, by its
// content: every cluster trusting the same bundle shares one secret, so 10k
// services with one CA are one SDS resource (in file mode one file, and one
// inotify instance in Envoy) instead of 10k. 128 bits of SHA-256 keep two
// bundles apart; a rotated bundle is a new name (see render/tls.go).
func CASecret(bundle []byte) string {
	sum := sha256.Sum256(bundle)
	return "meshext_ca_" + hex.EncodeToString(sum[:16])
}

// SecretCASecret names the SDS secret holding the trust anchors of a caCert
// taken from the mesh's Secret: one per Secret, so rotating the Secret
// changes that SDS resource and no cluster (F7).
func SecretCASecret(mesh, secret string) string { return "meshext_ca_secret:" + mesh + ":" + secret }

// ClientSecret names the SDS secret holding a cluster's client certificate.
func ClientSecret(cluster string) string { return cluster + "_client" }

// SystemCASecret names the secret of a system CA bundle, shared by every
// cluster that trusts it.
func SystemCASecret(path string) string {
	sum := sha256.Sum256([]byte(path))
	return "meshext_system_ca_" + hex.EncodeToString(sum[:6])
}

// MaxPathElement bounds what PathElement returns, leaving room under the
// usual 255-byte file name limit for a ".json" suffix and a temp-file wrapper.
const MaxPathElement = 200

// PathElement encodes any string as one file name, injectively: bytes in
// [a-z0-9_.-] stay, every other byte becomes %XX (upper-case hex), and so
// does a leading '.' (no ".", "..", hidden or temp-looking names). Upper case
// is escaped too, so the names stay distinct on case-insensitive file
// systems. The empty string is "%", which no other input gives.
//
// An encoding longer than MaxPathElement is cut and gets "%%" plus the
// SHA-256 of the whole input; "%%" never occurs in a short encoding, so long
// and short names cannot meet, and two long ones meet only on a SHA-256
// collision (which xds.FileWriter would still refuse before writing).
func PathElement(s string) string {
	if s == "" {
		return "%"
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isSafe(c) && !(i == 0 && c == '.') {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
	out := b.String()
	if len(out) <= MaxPathElement {
		return out
	}
	sum := sha256.Sum256([]byte(s))
	suffix := "%%" + hex.EncodeToString(sum[:])
	return out[:MaxPathElement-len(suffix)] + suffix
}

func isSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

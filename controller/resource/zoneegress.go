package resource

// KindZoneEgress is Kuma's ZoneEgress: an Envoy that every
// MeshExternalService request of an mTLS mesh leaves the zone through.
const KindZoneEgress Kind = "ZoneEgress"

// ZoneEgress (Kuma's api/mesh/v1alpha1/zoneegress.proto) is zone-scoped: it
// belongs to no mesh and serves every mTLS mesh of its zone. Universal style
// keeps zone and networking at the top level (`type: ZoneEgress`);
// Kubernetes style (`kind: ZoneEgress`, apiVersion kuma.io/v1alpha1) under
// spec.
type ZoneEgress struct {
	Meta `yaml:"-"`
	ZoneEgressSpec
}

// ZoneEgressSpec is what both styles carry.
type ZoneEgressSpec struct {
	// Zone is where the egress serves; empty or the local zone means this zone.
	Zone       string               `yaml:"zone,omitempty" json:"zone,omitempty"`
	Networking ZoneEgressNetworking `yaml:"networking" json:"networking"`
}

// ZoneEgressNetworking is where the egress listens for workloads, and its
// Envoy admin port (default DefaultZoneEgressAdminPort).
type ZoneEgressNetworking struct {
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	Port    int64  `yaml:"port,omitempty" json:"port,omitempty"`
	Admin   *Admin `yaml:"admin,omitempty" json:"admin,omitempty"`
}

// DefaultZoneEgressAdminPort is kuma-dp's default Envoy admin port.
const DefaultZoneEgressAdminPort = 9901

// IsLocal reports whether the egress serves zone (the local zone).
func (z *ZoneEgress) IsLocal(zone string) bool { return z.Zone == "" || z.Zone == zone }

// MeshScoped reports whether resources of kind belong to a mesh (their
// Meta.Mesh is set, "default" when the document names none).
func (k Kind) MeshScoped() bool { return k != KindMesh && k != KindZoneEgress }

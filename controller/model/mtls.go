package model

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/meshext/meshext/controller/names"
	capki "github.com/meshext/meshext/controller/pki"
	"github.com/meshext/meshext/controller/resource"
)

// MeshMTLS is a mesh with mTLS enabled (spec.mtls.enabledBackend). Its
// MeshExternalService traffic leaves through the zone's ZoneEgresses over
// mTLS, with identities from its CA. Build fills the backend and, for the
// provided type, the CA material from its Secrets; the identity step
// (controller/meshca) then fills CACert and Identities.
type MeshMTLS struct {
	Mesh    string
	Backend resource.CABackend
	// DPCertLifetime is the workload certificates' lifetime
	// (dpCert.rotation.expiration, else 24 h).
	DPCertLifetime time.Duration
	// ProvidedCert and ProvidedKey are a provided CA's PEM material.
	ProvidedCert, ProvidedKey []byte
	// CACert is the mesh CA certificate (PEM) every identity chains to.
	CACert []byte
	// Identities holds each node's identity in this mesh, by node id.
	Identities map[string]*Identity
	// Problem says why the mesh has no usable CA; its services are then
	// not Ready and nothing of theirs is rendered.
	Problem string
}

// DefaultDPCertLifetime is Kuma's workload certificate lifetime.
const DefaultDPCertLifetime = 24 * time.Hour

// Identity is one node's certificate in one mesh. Its key is private
// material: never print or log KeyPEM.
type Identity struct {
	// Node is the Envoy node id.
	Node string
	// SPIFFEID is spiffe://<mesh>/<service> (zone-egress for a ZoneEgress).
	SPIFFEID string
	// URIs are every URI SAN: the SPIFFE ID, then kuma://<tag>/<value>.
	URIs            []string
	CertPEM, KeyPEM []byte
	Serial          string
	NotBefore       time.Time
	NotAfter        time.Time
	RenewAt         time.Time
}

func (i *Identity) String() string {
	return fmt.Sprintf("%s %s serial %s expires %s", i.Node, i.SPIFFEID, i.Serial, i.NotAfter.UTC().Format(time.RFC3339))
}

// Condition meshext sets on services of mTLS meshes.
const (
	// ConditionZoneEgress says whether a ZoneEgress (and the mesh's CA) can
	// carry the service: False means nothing of it leaves the zone.
	ConditionZoneEgress = "ZoneEgressReady"
	ReasonNoZoneEgress  = "NoZoneEgress"
	ReasonNoCA          = "NoCertificateAuthority"
)

// meshesMTLS collects the meshes with an enabled backend, with a provided
// CA's material read from the mesh's Secrets.
func meshesMTLS(valid, all *resource.Set) map[string]*MeshMTLS {
	out := map[string]*MeshMTLS{}
	for _, m := range valid.Meshes {
		b := m.EnabledMTLSBackend()
		if b == nil {
			continue
		}
		mt := &MeshMTLS{Mesh: m.Name, Backend: *b, DPCertLifetime: DefaultDPCertLifetime, Identities: map[string]*Identity{}}
		if b.DPCert != nil && b.DPCert.Rotation != nil && b.DPCert.Rotation.Expiration != "" {
			if d, err := resource.ParseDuration(b.DPCert.Rotation.Expiration); err == nil && d > 0 {
				mt.DPCertLifetime = d
			}
		}
		if b.Type == resource.CAProvided && b.Conf != nil && b.Conf.Cert != nil && b.Conf.Key != nil {
			at := "mtls.backends[" + fmt.Sprint(slices.IndexFunc(m.MTLS.Backends, func(x resource.CABackend) bool { return x.Name == b.Name })) + "].conf."
			cert, _, _, fe := readSource(&m.Meta, at+"cert", b.Conf.Cert, valid, all)
			if fe == nil {
				var key []byte
				key, _, _, fe = readSource(&m.Meta, at+"key", b.Conf.Key, valid, all)
				mt.ProvidedKey = key
			}
			mt.ProvidedCert = cert
			if fe != nil {
				mt.Problem = fe.Error()
			}
		}
		out[m.Name] = mt
	}
	return out
}

// egressesOf lists the local ZoneEgresses' names, for messages.
func egressNames(zes []*resource.ZoneEgress) string {
	ns := make([]string, len(zes))
	for i, z := range zes {
		ns[i] = z.Name
	}
	return strings.Join(ns, ", ")
}

// checkEgressPath marks the services of mTLS meshes that cannot leave the
// zone: Kuma sends MeshExternalService traffic of an mTLS mesh through a
// ZoneEgress only, so with none in this zone (or no usable CA) the service
// is not Ready and gets no listener: nothing leaves (fail closed).
func (w *World) checkEgressPath(zone string) {
	for _, s := range w.Services {
		mt := w.MTLS[s.Mesh]
		if mt == nil || s.Broken != "" {
			continue
		}
		switch {
		case mt.Problem != "":
			s.cond(ConditionZoneEgress, StatusFalse, ReasonNoCA, mt.Problem)
			w.fail(s, s.Resource.Errorf("name", "mesh %q has mTLS on but no usable CA (%s); nothing of this service leaves the zone", s.Mesh, mt.Problem))
		case len(w.ZoneEgresses) == 0:
			msg := fmt.Sprintf("mesh %q has mTLS on, so MeshExternalService traffic leaves through a ZoneEgress, and zone %q has none; nothing of this service leaves the zone", s.Mesh, zone)
			s.cond(ConditionZoneEgress, StatusFalse, ReasonNoZoneEgress, msg)
			w.fail(s, s.Resource.Errorf("name", "%s", msg))
		default:
			s.cond(ConditionZoneEgress, StatusTrue, "Available", "through ZoneEgress "+egressNames(w.ZoneEgresses)+", SNI "+s.SNI)
		}
	}
}

// FailMesh marks every ready service of an mTLS mesh not Ready (the
// identity step calls it when the mesh's CA cannot issue), with the
// ZoneEgressReady condition saying why.
func (w *World) FailMesh(mesh, problem string) {
	if mt := w.MTLS[mesh]; mt != nil && mt.Problem == "" {
		mt.Problem = problem
	}
	for _, s := range w.Services {
		if s.Mesh != mesh || s.Broken != "" {
			continue
		}
		s.setCond(Condition{Type: ConditionZoneEgress, Status: StatusFalse, Reason: ReasonNoCA, Message: problem})
		w.fail(s, s.Resource.Errorf("name", "mesh %q has mTLS on but no usable CA (%s); nothing of this service leaves the zone", mesh, problem))
		s.setCond(Condition{Type: ConditionReady, Status: StatusFalse, Reason: "Broken", Message: s.Broken})
	}
}

// setCond replaces the condition of c's type, or appends it.
func (s *Service) setCond(c Condition) {
	for i := range s.Conditions {
		if s.Conditions[i].Type == c.Type {
			s.Conditions[i] = c
			return
		}
	}
	s.Conditions = append(s.Conditions, c)
}

// settleSNIs keeps one service per SNI within a mesh's egress listener.
// Kuma's SNI carries a 64-bit hash of display name and mesh next to them
// (cut at 62 characters), so this only ever fires on a hash collision.
func (w *World) settleSNIs() {
	seen := map[string]*Service{}
	for _, s := range w.Services {
		if s.Broken != "" || w.MTLS[s.Mesh] == nil {
			continue
		}
		if o := seen[s.SNI]; o != nil {
			w.fail(s, s.Resource.Errorf("name", "SNI %q is already used by MeshExternalService %s/%s; this service is not rendered", s.SNI, o.Mesh, o.Name))
			continue
		}
		seen[s.SNI] = s
	}
}

// NodeIdentity is who a node is in a mesh: its SPIFFE service and the
// tags its certificate carries.
type NodeIdentity struct {
	// Meta is the Dataplane's or ZoneEgress's, for messages.
	Meta    *resource.Meta
	Node    string
	Service string
	// Tags are Kuma's identity tags (every inbound's), each value once.
	Tags map[string][]string
}

// IdentityNodes lists the nodes that need an identity in an mTLS mesh:
// its Dataplanes (SPIFFE service: the kuma.io/service of inbound[0], else
// the Dataplane's name, as render.SourceIdentity; tags of every inbound,
// as Kuma) and every local ZoneEgress (service zone-egress).
func (w *World) IdentityNodes(mesh string) []NodeIdentity {
	var out []NodeIdentity
	for _, dp := range w.Dataplanes {
		if dp.Mesh != mesh {
			continue
		}
		ni := NodeIdentity{Meta: &dp.Meta, Node: names.NodeID(dp.Mesh, dp.Name), Service: dp.Name, Tags: map[string][]string{}}
		if len(dp.Networking.Inbound) > 0 {
			if s := dp.Networking.Inbound[0].Tags[resource.LabelService]; s != "" {
				ni.Service = s
			}
		}
		for _, in := range dp.Networking.Inbound {
			for k, v := range in.Tags {
				if !slices.Contains(ni.Tags[k], v) {
					ni.Tags[k] = append(ni.Tags[k], v)
				}
			}
		}
		for k := range ni.Tags {
			slices.Sort(ni.Tags[k])
		}
		out = append(out, ni)
	}
	for _, z := range w.ZoneEgresses {
		out = append(out, NodeIdentity{Meta: &z.Meta, Node: names.ZoneEgressNodeID(z.Name), Service: names.ZoneEgressService,
			Tags: map[string][]string{resource.LabelService: {names.ZoneEgressService}}})
	}
	return out
}

// IdentityView is an identity or a mesh CA as status and `meshext
// inspect` show it: who, serial, validity; never key material.
type IdentityView struct {
	Mesh string `json:"mesh"`
	// Node is the Envoy node id; empty for the mesh CA itself.
	Node      string    `json:"node,omitempty"`
	SPIFFEID  string    `json:"spiffeID"`
	URIs      []string  `json:"uris,omitempty"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	RenewAt   time.Time `json:"renewAt,omitzero"`
	// CA says which backend (for the CA) or "" for identities.
	CA string `json:"ca,omitempty"`
}

// IdentityViews lists each mTLS mesh's CA and then its identities, meshes
// and nodes in name order.
func (w *World) IdentityViews() []IdentityView {
	var out []IdentityView
	for _, m := range slices.Sorted(maps.Keys(w.MTLS)) {
		mt := w.MTLS[m]
		if v, ok := mt.CAView(mt.CACert); ok {
			out = append(out, v)
		}
		for _, n := range slices.Sorted(maps.Keys(mt.Identities)) {
			id := mt.Identities[n]
			out = append(out, IdentityView{Mesh: m, Node: n, SPIFFEID: id.SPIFFEID, URIs: slices.Clone(id.URIs),
				Serial: id.Serial, NotBefore: id.NotBefore, NotAfter: id.NotAfter, RenewAt: id.RenewAt})
		}
	}
	return out
}

// CAView describes the mesh's CA from its certificate caPEM; ok is false
// when caPEM holds no certificate (the view then names the backend only).
func (mt *MeshMTLS) CAView(caPEM []byte) (v IdentityView, ok bool) {
	v = IdentityView{Mesh: mt.Mesh, SPIFFEID: "spiffe://" + mt.Mesh, CA: mt.Backend.Name + " (" + mt.Backend.Type + ")"}
	cs, err := capki.ParseCertsPEM(caPEM)
	if err != nil {
		return v, false
	}
	c := cs[0]
	v.Serial, v.NotBefore, v.NotAfter = c.SerialNumber.Text(16), c.NotBefore, c.NotAfter
	if len(c.URIs) > 0 {
		v.SPIFFEID = c.URIs[0].String()
	}
	return v, true
}

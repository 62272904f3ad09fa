package render

import (
	"bytes"
	"net/netip"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
)

// Memo carries each service's rendered messages from one Render to the
// next, so a reload after a one-service edit renders, validates and hashes
// that service again and reuses the others' messages as they are. Reused
// messages are the same pointers as before, which lets delivery skip its
// own per-resource work for them (controller/xds keys its memos by
// identity). Not safe for concurrent use; the zero value is ready, and a
// nil *Memo renders everything.
//
// What a reused message may depend on is spelled out here, so a change to
// any of it renders afresh:
//   - a service's cluster and secrets (renderer.service) are a function of
//     the Options and of the service's own fields (renderInput), its
//     source resource by identity;
//   - a cluster as a node's policies shape it (policyCluster) is a function
//     of the service's cluster (by identity) and its cluster settings
//     (clusterSettings, the same key that shares it between nodes).
//
// Everything else (listeners, route tables, authorization) is rendered on
// every Render: it depends on the whole World.
type Memo struct {
	opts     Options
	services map[string]*memoService
	variants map[variantKey]*clusterVariant
	// next* collect what this Render used: the memo keeps no more than one
	// Render's worth of messages.
	nextServices map[string]*memoService
	nextVariants map[variantKey]*clusterVariant
}

type memoService struct {
	in  renderInput
	out *rendered
}

type variantKey struct {
	base     *clusterv3.Cluster
	settings string
}

// Render is the package-level Render, reusing m's messages where their
// inputs are unchanged, then remembering this Render's.
func (m *Memo) Render(w *model.World, opts Options) (*Output, error) {
	if m != nil {
		if m.opts != opts {
			m.services, m.variants = nil, nil
		}
		m.opts = opts
		m.nextServices = make(map[string]*memoService, len(m.services))
		m.nextVariants = make(map[variantKey]*clusterVariant, len(m.variants))
	}
	out, err := render(w, opts, m)
	if m != nil {
		if err != nil {
			m.services, m.variants = nil, nil
		} else {
			m.services, m.variants = m.nextServices, m.nextVariants
		}
		m.nextServices, m.nextVariants = nil, nil
	}
	return out, err
}

// service returns the rendering of s kept from the last Render when s's
// render input is unchanged, for s itself.
func (m *Memo) service(s *model.Service) *rendered {
	if m == nil {
		return nil
	}
	e := m.services[s.ClusterName()]
	if e == nil || !e.in.equal(s) {
		return nil
	}
	m.nextServices[s.ClusterName()] = e
	return &rendered{svc: s, cluster: e.out.cluster, secrets: e.out.secrets, digest: e.out.digest}
}

func (m *Memo) keepService(s *model.Service, rs *rendered) {
	if m == nil {
		return
	}
	m.nextServices[s.ClusterName()] = &memoService{in: inputOf(s), out: rs}
}

func (m *Memo) variant(k variantKey) *clusterVariant {
	if m == nil {
		return nil
	}
	v := m.variants[k]
	if v != nil {
		m.nextVariants[k] = v
	}
	return v
}

func (m *Memo) keepVariant(k variantKey, v *clusterVariant) {
	if m != nil {
		m.nextVariants[k] = v
	}
}

// renderInput is every field of a model.Service that its cluster and
// secrets are rendered from: all of them except the status Render and
// Build write (Conditions, Broken; a Broken service is not rendered).
// TestRenderInputCoversService fails when a field is added to
// model.Service, so the new one is considered here.
type renderInput struct {
	mesh, name, protocol string
	port                 uint32
	vip                  netip.Addr
	hostnames            []string
	addresses            []model.Address
	endpoints            []model.Endpoint
	tls                  *model.TLS
	resource             *resource.MeshExternalService // by identity
	cluster, sni         string
}

func inputOf(s *model.Service) renderInput {
	in := renderInput{mesh: s.Mesh, name: s.Name, protocol: s.Protocol, port: s.Port, vip: s.VIP,
		hostnames: s.Hostnames, addresses: s.Addresses, endpoints: s.Endpoints, resource: s.Resource,
		cluster: s.Cluster, sni: s.SNI}
	if s.TLS != nil {
		t := *s.TLS
		in.tls = &t
	}
	return in
}

func (in *renderInput) equal(s *model.Service) bool {
	return in.mesh == s.Mesh && in.name == s.Name && in.protocol == s.Protocol && in.port == s.Port &&
		in.vip == s.VIP && in.cluster == s.Cluster && in.sni == s.SNI && in.resource == s.Resource &&
		slices.Equal(in.hostnames, s.Hostnames) && slices.Equal(in.addresses, s.Addresses) &&
		slices.Equal(in.endpoints, s.Endpoints) && sameTLS(in.tls, s.TLS)
}

func sameTLS(a, b *model.TLS) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Mode == b.Mode && a.MinVersion == b.MinVersion && a.MaxVersion == b.MaxVersion &&
		a.AllowRenegotiation == b.AllowRenegotiation && a.ServerName == b.ServerName &&
		slices.Equal(a.SANs, b.SANs) && bytes.Equal(a.CA, b.CA) && a.CASource == b.CASource &&
		a.SystemCAPath == b.SystemCAPath && bytes.Equal(a.ClientCert, b.ClientCert) &&
		bytes.Equal(a.ClientKey, b.ClientKey) && a.ClientCertSource == b.ClientCertSource
}

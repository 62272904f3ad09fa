// Package model is the compiled view of a resource set that rendering and
// the data-plane filter consume: valid MeshExternalServices with their VIPs,
// hostnames and resolved TLS material, the Dataplanes, the meshes' switches
// and the traffic permissions. Data flows one way: resource -> model -> render.
package model

import (
	"net/netip"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
)

// World is everything rendering needs, built from one resource.Set.
type World struct {
	// Services are the MeshExternalServices that passed validation, sorted by mesh then name.
	// A service whose TLS material could not be resolved is still listed, with Broken set,
	// so status can show it; rendering skips it (fail closed) without touching the others.
	Services []*Service
	// Dataplanes are the valid Dataplane resources, sorted by mesh then name.
	Dataplanes []*resource.Dataplane
	// Meshes holds the mesh-wide switches by mesh name (missing = defaults).
	Meshes map[string]*resource.Mesh
	// Permissions are the valid MeshTrafficPermissions, sorted by mesh then name.
	Permissions []*resource.MeshTrafficPermission
	// ZoneEgresses are the valid ZoneEgresses of the local zone, sorted by name.
	ZoneEgresses []*resource.ZoneEgress
	// MTLS holds the meshes with mTLS enabled, by name (see MeshMTLS).
	MTLS map[string]*MeshMTLS
	// Problems are every validation and build error, each tied to its file, line, resource and field.
	Problems []*resource.FieldError
	// Policies resolves the valid targetRef policies (and Kuma's implicit
	// defaults) into each proxy's effective conf per service: Policies.For.
	Policies *policy.Resolver
}

// Service returns the service of that mesh and name, or nil.
func (w *World) Service(mesh, name string) *Service {
	for _, s := range w.Services {
		if s.Mesh == mesh && s.Name == name {
			return s
		}
	}
	return nil
}

// Service is one MeshExternalService ready to render.
type Service struct {
	Mesh     string
	Name     string
	Protocol string // tcp, http, http2, grpc
	Port     uint32 // match.port: the port on the VIP; 0 = every port (match.port omitted)
	VIP      netip.Addr
	// Hostnames are the generated names this service won, sorted by generator.
	Hostnames []string
	// Addresses pairs each won hostname with its generator (Kuma's status.addresses[]).
	Addresses []Address
	Endpoints []Endpoint
	TLS       *TLS // nil when tls is absent or tls.enabled is false
	// Conditions are status conditions (hostname generation, TLS, render).
	Conditions []Condition
	// Broken, when non-empty, says why this service cannot be rendered (for example a
	// missing secret or no CA in Secured mode); it affects only this service.
	Broken string
	// Resource is the source resource (for file/line in messages and for status).
	Resource *resource.MeshExternalService
	// Cluster is the Envoy cluster name (set by Build; see ClusterName).
	Cluster string
	// SNI is Kuma's SNI of the service, which workloads send to a ZoneEgress
	// (names.MeshExternalServiceSNI).
	SNI string
}

// ClusterName is the Envoy cluster for this service: Kuma's destination name
// (see controller/names), which Build checked is this service's alone.
func (s *Service) ClusterName() string {
	switch {
	case s.Cluster != "":
		return s.Cluster
	case s.Resource != nil:
		return names.MeshExternalServiceCluster(&s.Resource.Meta, s.Port)
	}
	return names.LegacyDestination(s.Mesh, s.Name, "", "", names.ExtSvcShortName, s.Port)
}

// Endpoint is one destination.
type Endpoint struct {
	Address  string // IP literal, DNS name, or a unix socket path (Unix set)
	Port     uint32 // 0 for unix sockets
	Unix     bool
	IsIP     bool
	Priority uint32
}

// TLS is the resolved TLS origination plan, with Kuma's defaults applied.
type TLS struct {
	Mode               string // Secured, SkipSAN, SkipCA, SkipAll
	MinVersion         string // TLSAuto, TLS10..TLS13
	MaxVersion         string
	AllowRenegotiation bool
	ServerName         string // explicit verification.serverName ("" = per-endpoint host)
	SANs               []resource.SubjectAltName
	// CA is the PEM of the user's caCert (inline or secret); empty when none was given.
	CA []byte
	// CASource says where the trust anchors come from: "inline", "secret:<name>",
	// "system:<path>", or "" when there are none.
	CASource string
	// SystemCAPath is the OS/override bundle used when CA is empty.
	SystemCAPath string
	// ClientCert and ClientKey are PEM; both or neither are set.
	ClientCert []byte
	ClientKey  []byte
	// Secret names the source of each material for status and SDS naming
	// ("inline" or "secret:<name>").
	ClientCertSource string
}

// Condition is a status condition in Kuma's shape.
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"` // "True" or "False"
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
	// Generator names the HostnameGenerator for hostname conditions.
	Generator string `json:"generator,omitempty"`
}

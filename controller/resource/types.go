// Package resource is meshext's model of the Kuma resources it reads:
// MeshExternalService, HostnameGenerator, MeshTrafficPermission, Dataplane,
// Mesh, Secret and the targetRef policy kinds of policy.go, in Kubernetes style (apiVersion/kind/metadata/spec) or
// Kuma universal style (type/name/mesh/labels). Field names and defaults follow
// Kuma v2.14's schema so users' YAML is accepted unchanged.
package resource

import "strconv"

// Kind names a resource type exactly as Kuma spells it.
type Kind string

const (
	KindMeshExternalService   Kind = "MeshExternalService"
	KindHostnameGenerator     Kind = "HostnameGenerator"
	KindMeshTrafficPermission Kind = "MeshTrafficPermission"
	KindDataplane             Kind = "Dataplane"
	KindMesh                  Kind = "Mesh"
	KindSecret                Kind = "Secret"
)

// Kinds lists every kind meshext reads, in the order resources are reported.
var Kinds = append([]Kind{KindMesh, KindSecret, KindHostnameGenerator, KindMeshExternalService, KindMeshTrafficPermission, KindDataplane, KindZoneEgress}, PolicyKinds...)

// Well-known labels (Kuma's names).
const (
	LabelMesh        = "kuma.io/mesh"
	LabelOrigin      = "kuma.io/origin"
	LabelZone        = "kuma.io/zone"
	LabelEnv         = "kuma.io/env"
	LabelDisplayName = "kuma.io/display-name"
	LabelNamespace   = "k8s.kuma.io/namespace"
	LabelService     = "kuma.io/service"
	LabelProtocol    = "kuma.io/protocol"

	DefaultMesh     = "default"
	SystemNamespace = "kuma-system"
	SecretK8sType   = "system.kuma.io/secret"
)

// Object is any parsed resource.
type Object interface {
	GetMeta() *Meta
}

// MeshExternalService declares a service outside the mesh (kuma.io/v1alpha1).
type MeshExternalService struct {
	Meta `yaml:"-"`
	Spec MeshExternalServiceSpec `yaml:"spec"`
}

type MeshExternalServiceSpec struct {
	Match     Match      `yaml:"match" json:"match"`
	Endpoints []Endpoint `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
	TLS       *TLS       `yaml:"tls,omitempty" json:"tls,omitempty"`
	Extension *Extension `yaml:"extension,omitempty" json:"extension,omitempty"`
}

// Match types and protocols.
const (
	MatchTypeHostnameGenerator = "HostnameGenerator"

	ProtocolTCP   = "tcp"
	ProtocolGRPC  = "grpc"
	ProtocolHTTP  = "http"
	ProtocolHTTP2 = "http2"
)

type Match struct {
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// Port is the port on the VIP; nil (omitted) matches every port, as the
	// seed documents ("The port field when omitted means that all traffic will be matched").
	Port     *int64 `yaml:"port,omitempty" json:"port,omitempty"`
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty"`
}

// Endpoint is an IP, a DNS name, or a unix socket (`unix:///path`, no port).
type Endpoint struct {
	Address  string  `yaml:"address" json:"address"`
	Port     int64   `yaml:"port,omitempty" json:"port,omitempty"`
	Priority *uint32 `yaml:"priority,omitempty" json:"priority,omitempty"`
}

// UnixPrefix starts a unix domain socket endpoint address.
const UnixPrefix = "unix://"

// TLS versions and verification modes.
const (
	TLSAuto = "TLSAuto"
	TLS10   = "TLS10"
	TLS11   = "TLS11"
	TLS12   = "TLS12"
	TLS13   = "TLS13"

	ModeSecured = "Secured"
	ModeSkipSAN = "SkipSAN"
	ModeSkipCA  = "SkipCA"
	ModeSkipAll = "SkipAll"

	SANExact  = "Exact"
	SANPrefix = "Prefix"
)

type TLS struct {
	Enabled            bool          `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	Version            *TLSVersion   `yaml:"version,omitempty" json:"version,omitempty"`
	AllowRenegotiation bool          `yaml:"allowRenegotiation,omitempty" json:"allowRenegotiation,omitempty"`
	Verification       *Verification `yaml:"verification,omitempty" json:"verification,omitempty"`
}

type TLSVersion struct {
	Min string `yaml:"min,omitempty" json:"min,omitempty"`
	Max string `yaml:"max,omitempty" json:"max,omitempty"`
}

type Verification struct {
	Mode            string           `yaml:"mode,omitempty" json:"mode,omitempty"`
	ServerName      string           `yaml:"serverName,omitempty" json:"serverName,omitempty"`
	SubjectAltNames []SubjectAltName `yaml:"subjectAltNames,omitempty" json:"subjectAltNames,omitempty"`
	CACert          *DataSource      `yaml:"caCert,omitempty" json:"caCert,omitempty"`
	ClientCert      *DataSource      `yaml:"clientCert,omitempty" json:"clientCert,omitempty"`
	ClientKey       *DataSource      `yaml:"clientKey,omitempty" json:"clientKey,omitempty"`
}

type SubjectAltName struct {
	Type  string `yaml:"type,omitempty" json:"type,omitempty"`
	Value string `yaml:"value" json:"value"`
}

// DataSource holds exactly one of: inline (base64), inlineString, secret (a
// mesh-scoped Secret's name). Inline is kept as text so bad base64 is reported
// by validation, with its line, rather than by the YAML decoder.
type DataSource struct {
	Inline       *string `yaml:"inline,omitempty" json:"inline,omitempty"`
	InlineString *string `yaml:"inlineString,omitempty" json:"inlineString,omitempty"`
	Secret       *string `yaml:"secret,omitempty" json:"secret,omitempty"`
}

// Extension is Kuma's plug-in hook; meshext keeps it and does not interpret it.
type Extension struct {
	Type   string `yaml:"type" json:"type"`
	Config any    `yaml:"config,omitempty" json:"config,omitempty"`
}

// HostnameGenerator renders hostnames for the resources its selector picks.
type HostnameGenerator struct {
	Meta `yaml:"-"`
	Spec HostnameGeneratorSpec `yaml:"spec"`
}

type HostnameGeneratorSpec struct {
	Selector  HostnameSelector `yaml:"selector" json:"selector"`
	Template  string           `yaml:"template" json:"template"`
	Extension *Extension       `yaml:"extension,omitempty" json:"extension,omitempty"`
}

type HostnameSelector struct {
	MeshService          *LabelSelector `yaml:"meshService,omitempty" json:"meshService,omitempty"`
	MeshExternalService  *LabelSelector `yaml:"meshExternalService,omitempty" json:"meshExternalService,omitempty"`
	MeshMultiZoneService *LabelSelector `yaml:"meshMultiZoneService,omitempty" json:"meshMultiZoneService,omitempty"`
}

type LabelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels,omitempty" json:"matchLabels,omitempty"`
}

// Matches reports whether every listed label is present with the same value.
// An empty selector matches everything (Kuma's rule).
func (s *LabelSelector) Matches(labels map[string]string) bool {
	if s == nil {
		return false
	}
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// MeshTrafficPermission, egress form: who may reach which MeshExternalService.
type MeshTrafficPermission struct {
	Meta `yaml:"-"`
	Spec MeshTrafficPermissionSpec `yaml:"spec"`
}

type MeshTrafficPermissionSpec struct {
	TargetRef *TargetRef        `yaml:"targetRef,omitempty" json:"targetRef,omitempty"`
	From      []TrafficPermFrom `yaml:"from,omitempty" json:"from,omitempty"`
	// Rules is Kuma 2.12's form (see mtprules.go); a policy has from or rules.
	Rules []TrafficPermRule `yaml:"rules,omitempty" json:"rules,omitempty"`
}

// TargetRef kinds.
const (
	RefMesh                = "Mesh"
	RefMeshService         = "MeshService"
	RefMeshSubset          = "MeshSubset"
	RefMeshServiceSubset   = "MeshServiceSubset"
	RefMeshExternalService = "MeshExternalService"
	RefDataplane           = "Dataplane"
)

type TargetRef struct {
	Kind string            `yaml:"kind" json:"kind"`
	Name string            `yaml:"name,omitempty" json:"name,omitempty"`
	Tags map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
	// Kind Dataplane selects proxies by name (and namespace) or labels;
	// sectionName names one of their listeners.
	Namespace   string            `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	SectionName string            `yaml:"sectionName,omitempty" json:"sectionName,omitempty"`
}

// Traffic permission actions.
const (
	ActionAllow               = "Allow"
	ActionDeny                = "Deny"
	ActionAllowWithShadowDeny = "AllowWithShadowDeny"
)

type TrafficPermFrom struct {
	TargetRef TargetRef       `yaml:"targetRef" json:"targetRef"`
	Default   TrafficPermConf `yaml:"default" json:"default"`
}

type TrafficPermConf struct {
	Action string `yaml:"action" json:"action"`
}

// Dataplane is a workload's proxy: its inbounds, its MES outbounds and its
// transparent-proxy and admin ports.
type Dataplane struct {
	Meta       `yaml:"-"`
	Networking DataplaneNetworking `yaml:"networking"`
}

type DataplaneNetworking struct {
	Address             string               `yaml:"address" json:"address"`
	AdvertisedAddress   string               `yaml:"advertisedAddress,omitempty" json:"advertisedAddress,omitempty"`
	Inbound             []Inbound            `yaml:"inbound,omitempty" json:"inbound,omitempty"`
	Outbound            []Outbound           `yaml:"outbound,omitempty" json:"outbound,omitempty"`
	TransparentProxying *TransparentProxying `yaml:"transparentProxying,omitempty" json:"transparentProxying,omitempty"`
	Admin               *Admin               `yaml:"admin,omitempty" json:"admin,omitempty"`
}

type Inbound struct {
	Port           int64             `yaml:"port" json:"port"`
	ServicePort    int64             `yaml:"servicePort,omitempty" json:"servicePort,omitempty"`
	ServiceAddress string            `yaml:"serviceAddress,omitempty" json:"serviceAddress,omitempty"`
	Address        string            `yaml:"address,omitempty" json:"address,omitempty"`
	Tags           map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
}

type Outbound struct {
	Port       int64             `yaml:"port" json:"port"`
	Address    string            `yaml:"address,omitempty" json:"address,omitempty"`
	BackendRef *BackendRef       `yaml:"backendRef,omitempty" json:"backendRef,omitempty"`
	Tags       map[string]string `yaml:"tags,omitempty" json:"tags,omitempty"`
}

type BackendRef struct {
	Kind   string            `yaml:"kind" json:"kind"`
	Name   string            `yaml:"name" json:"name"`
	Port   int64             `yaml:"port,omitempty" json:"port,omitempty"`
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

type TransparentProxying struct {
	RedirectPortOutbound int64 `yaml:"redirectPortOutbound,omitempty" json:"redirectPortOutbound,omitempty"`
	RedirectPortInbound  int64 `yaml:"redirectPortInbound,omitempty" json:"redirectPortInbound,omitempty"`
	// Other Kuma transparent-proxy fields are accepted and not used here.
	Extra map[string]any `yaml:",inline" json:"-"`
}

type Admin struct {
	Port int64 `yaml:"port" json:"port"`
}

// Mesh carries the mesh-wide switches meshext uses (mtls, routing); other
// Kuma Mesh fields (logging, tracing, ...) are accepted and ignored.
type Mesh struct {
	Meta    `yaml:"-"`
	MTLS    *MeshMTLS      `yaml:"mtls,omitempty" json:"mtls,omitempty"`
	Routing *MeshRouting   `yaml:"routing,omitempty" json:"routing,omitempty"`
	Extra   map[string]any `yaml:",inline" json:"-"`

	// SkipCreatingInitialPolicies lists the kinds of Kuma's default policies
	// not to create for this mesh ("*" = all); see controller/policy.
	SkipCreatingInitialPolicies []string `yaml:"skipCreatingInitialPolicies,omitempty" json:"skipCreatingInitialPolicies,omitempty"`
}

type MeshRouting struct {
	DefaultForbidMeshExternalServiceAccess bool           `yaml:"defaultForbidMeshExternalServiceAccess,omitempty" json:"defaultForbidMeshExternalServiceAccess,omitempty"`
	ZoneEgress                             bool           `yaml:"zoneEgress,omitempty" json:"zoneEgress,omitempty"`
	Extra                                  map[string]any `yaml:",inline" json:"-"`
}

// ForbidsMeshExternalServiceAccess reports the mesh's default-deny switch.
func (m *Mesh) ForbidsMeshExternalServiceAccess() bool {
	return m != nil && m.Routing != nil && m.Routing.DefaultForbidMeshExternalServiceAccess
}

// Secret is a mesh-scoped secret. Data is the decoded value; secret bytes are
// never printed (see String).
type Secret struct {
	Meta `yaml:"-"`
	Data []byte `yaml:"-" json:"-"`
}

func (s *Secret) String() string {
	return "Secret " + s.Mesh + "/" + s.Name + " (" + strconv.Itoa(len(s.Data)) + " bytes)"
}

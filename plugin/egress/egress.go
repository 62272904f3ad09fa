// Package egress is the HTTP request logic both Envoy adapters share: parse
// the filter configuration, decide a request from its host and client
// identity, and say what to answer. It knows no Envoy SDK.
package egress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/meshext/meshext/plugin/core"
)

// FilterName is the name both adapters register: the dynamic module's
// filter_name and the contrib golang filter's plugin_name.
const FilterName = "meshext"

// DefaultClusterHeader carries the chosen MES cluster to the route, which
// must use cluster_header routing with this name.
const DefaultClusterHeader = "x-meshext-cluster"

// MetadataNamespace is the dynamic metadata namespace decisions are written
// to, e.g. %DYNAMIC_METADATA(meshext:action)% in an access log.
const MetadataNamespace = "meshext"

// Metadata keys (all string values). Each key is one call into Envoy on
// the request path, so allowed requests carry action, mes and policy (plus
// source when it came from a client certificate; otherwise the source is
// the listener owner); denied requests carry all five.
const (
	MetaAction = "action" // Allow, Deny, AllowWithShadowDeny, NotFound
	MetaMES    = "mes"
	MetaMesh   = "mesh"
	MetaPolicy = "policy" // policy name, "mesh-default" or "foreign-mesh"
	MetaSource = "source" // kuma.io/service of the source
)

// Counter names (adapters prefix them as their SDK requires).
const (
	CounterAllowed     = "meshext_allowed"
	CounterDenied      = "meshext_denied"
	CounterShadowDeny  = "meshext_shadow_denied"
	CounterUnknownHost = "meshext_unknown_host"
	CounterErrors      = "meshext_errors"
)

// Reply details (Envoy response code details; no whitespace allowed).
const (
	DetailDenied      = "meshext_egress_denied"
	DetailUnknownHost = "meshext_unknown_host"
	DetailError       = "meshext_filter_error"
)

// gRPC statuses of local replies: 403 deny, 404 unknown host (Envoy's own
// mapping of 404), 500 filter error.
const (
	GRPCPermissionDenied = 7
	GRPCUnimplemented    = 12
	GRPCInternal         = 13
)

// FilterConfig is the whole filter configuration the controller renders:
// the core.Config fields inline plus adapter options.
type FilterConfig struct {
	core.Config
	// ClusterHeader overrides DefaultClusterHeader.
	ClusterHeader string `json:"clusterHeader,omitempty"`
	// IgnoreClientCertificates disables taking the source identity from a
	// validated client certificate's SPIFFE URI SAN; every request is then
	// attributed to the Config's source.
	IgnoreClientCertificates bool `json:"ignoreClientCertificates,omitempty"`
	// RequireClientCertificate denies (403, gRPC 7) every request without a
	// validated client certificate carrying a SPIFFE ID, instead of
	// attributing it to the Config's source: set it where callers are told
	// apart by certificate only (a ZoneEgress).
	RequireClientCertificate bool `json:"requireClientCertificate,omitempty"`
	// TableKey makes filter configs with the same key share one live table
	// (use the listener name). Envoy keeps connections opened under an old
	// listener config on the old filter chain until they drain; with a key,
	// a new config is swapped in atomically for those connections too, so
	// a policy change takes effect on the next request everywhere. Empty:
	// the config is private and changes reach new connections only.
	TableKey string `json:"tableKey,omitempty"`
	// DenyMetadataOnly skips dynamic metadata on allowed requests (each
	// key is a call into Envoy); denials, shadow denials (allowed by
	// AllowWithShadowDeny) and unknown hosts still carry it. The access
	// log attributes an allowed request by its upstream cluster.
	DenyMetadataOnly bool `json:"denyMetadataOnly,omitempty"`
	// FixedCluster says the listener's route already names the one MES it
	// serves (a per-service listener): the filter only authorizes, and
	// neither sets ClusterHeader nor makes Envoy pick the route again.
	FixedCluster bool `json:"fixedCluster,omitempty"`
}

// Compiled is a parsed, compiled filter configuration; immutable.
type Compiled struct {
	Table                    *core.Table
	ClusterHeader            string
	IgnoreClientCertificates bool
	RequireClientCertificate bool
	DenyMetadataOnly         bool
	FixedCluster             bool
	key                      string
}

// Parse reads a FilterConfig (JSON; unknown fields are errors so typos in
// rendered config surface as a NACK) and compiles it.
func Parse(raw []byte) (*Compiled, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("meshext: empty filter config")
	}
	var fc FilterConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		return nil, fmt.Errorf("meshext: filter config: %w", err)
	}
	tab, err := core.Compile(&fc.Config)
	if err != nil {
		return nil, fmt.Errorf("meshext: filter config: %w", err)
	}
	if fc.RequireClientCertificate && fc.IgnoreClientCertificates {
		return nil, fmt.Errorf("meshext: filter config: requireClientCertificate and ignoreClientCertificates are exclusive")
	}
	c := &Compiled{Table: tab, ClusterHeader: fc.ClusterHeader, IgnoreClientCertificates: fc.IgnoreClientCertificates,
		RequireClientCertificate: fc.RequireClientCertificate,
		DenyMetadataOnly:         fc.DenyMetadataOnly, FixedCluster: fc.FixedCluster, key: fc.TableKey}
	if c.ClusterHeader == "" {
		c.ClusterHeader = DefaultClusterHeader
	}
	return c, nil
}

// Live is what an adapter keeps per filter config: the current Compiled,
// read lock-free per request.
type Live struct{ p *atomic.Pointer[Compiled] }

// Current is the configuration to decide the next request with.
func (l *Live) Current() *Compiled { return l.p.Load() }

// shared holds one pointer per TableKey for the life of the process (keys
// are listener names: few, bounded). The mutex guards the map only, on the
// config path; requests never take it.
var shared = struct {
	sync.Mutex
	m map[string]*atomic.Pointer[Compiled]
}{m: map[string]*atomic.Pointer[Compiled]{}}

// Load parses raw and publishes it: under its TableKey (replacing what
// every older config with that key serves) or privately.
func Load(raw []byte) (*Live, error) {
	c, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	if c.key == "" {
		p := &atomic.Pointer[Compiled]{}
		p.Store(c)
		return &Live{p: p}, nil
	}
	shared.Lock()
	defer shared.Unlock()
	p := shared.m[c.key]
	if p == nil {
		p = &atomic.Pointer[Compiled]{}
		shared.m[c.key] = p
	}
	p.Store(c)
	return &Live{p: p}, nil
}

// Verdict is what the adapter does with a request.
type Verdict uint8

const (
	// Forward: set ClusterHeader to Entry.Service.Cluster, refresh the route, continue.
	Forward Verdict = iota
	// Reject: answer 403 (gRPC status 7) with DenyBody.
	Reject
	// NotFound: answer 404 with NotFoundBody.
	NotFound
)

// Result is one request's outcome.
type Result struct {
	Verdict  Verdict
	Entry    *core.Entry // nil for NotFound
	Decision core.Decision
	// Source is the service the decision was made for.
	Source string
	// FromCertificate: Source came from a client certificate's SPIFFE ID.
	FromCertificate bool
	// Shadow is true when the request passes only because the deciding
	// policy says AllowWithShadowDeny: log it as "would be denied".
	Shadow bool
}

// Decide runs the core for one request. peerURISAN is the first URI SAN of
// a validated client certificate, or "".
func (c *Compiled) Decide(authority, peerURISAN string) Result {
	e := c.Table.Lookup(authority)
	if e == nil {
		return Result{Verdict: NotFound}
	}
	var d core.Decision
	source, fromCert := c.Table.Source().Service, false
	if id, ok := core.ParseSPIFFE(peerURISAN); ok && !c.IgnoreClientCertificates {
		d = e.DecideFor(&id)
		source, fromCert = id.Service, true
	} else if c.RequireClientCertificate {
		d, source = core.Decision{Action: core.Deny, Reason: core.ReasonUnauthenticated}, ""
	} else {
		d = e.Decide()
	}
	r := Result{Entry: e, Decision: d, Source: source, FromCertificate: fromCert}
	switch d.Action {
	case core.Deny:
		r.Verdict = Reject
	case core.AllowWithShadowDeny:
		r.Shadow = true
	}
	return r
}

// DenyBody is the 403 body: which MES, which source, what decided.
func (r *Result) DenyBody() string {
	return "meshext: access to MeshExternalService " + strconv.Quote(r.Entry.Service.Name) +
		" in mesh " + strconv.Quote(r.Entry.Service.Mesh) + " from " + strconv.Quote(r.Source) +
		" denied by " + describe(r.Decision) + "\n"
}

// ShadowLog is the log line for an AllowWithShadowDeny pass.
func (r *Result) ShadowLog() string {
	return "meshext: shadow deny: request from " + strconv.Quote(r.Source) + " to MeshExternalService " +
		strconv.Quote(r.Entry.Service.Name) + " allowed, would be denied by " + describe(r.Decision)
}

// NotFoundBody is the 404 body for a host no MES owns.
func NotFoundBody(authority string) string {
	if len(authority) > 256 {
		authority = authority[:256]
	}
	return "meshext: no MeshExternalService matches host " + strconv.Quote(authority) + "\n"
}

// GRPCMessage encodes text as a grpc-message value (percent-encoding as
// the gRPC HTTP/2 spec requires, trailing newline dropped).
func GRPCMessage(text string) string {
	const hex = "0123456789ABCDEF"
	text = strings.TrimRight(text, "\n")
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func describe(d core.Decision) string {
	switch d.Reason {
	case core.ReasonPolicy:
		return "MeshTrafficPermission " + strconv.Quote(d.Policy)
	case core.ReasonForeignMesh:
		return "mesh boundary (source is in another mesh)"
	case core.ReasonRulesDefault:
		return "MeshTrafficPermission rules " + strconv.Quote(d.Policy) + " (no rule allows this source)"
	case core.ReasonUnauthenticated:
		return "the egress (no verified client certificate with a SPIFFE ID)"
	}
	return "mesh default (routing.defaultForbidMeshExternalServiceAccess)"
}

// ActionName is the metadata value for a Result's action.
func (r *Result) ActionName() string {
	if r.Verdict == NotFound {
		return "NotFound"
	}
	return string(r.Decision.Action)
}

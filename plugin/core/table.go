package core

import "strings"

// Reason says where a Decision came from.
type Reason uint8

const (
	// ReasonPolicy: a MeshTrafficPermission from[] entry matched (Decision.Policy names it).
	ReasonPolicy Reason = iota
	// ReasonMeshDefault: no policy matched; the mesh default applied
	// (Allow, or Deny when defaultForbidMeshExternalServiceAccess is set).
	ReasonMeshDefault
	// ReasonForeignMesh: the source belongs to another mesh than the MES; always Deny.
	ReasonForeignMesh
	// ReasonRulesDefault: rules policies apply to the MES and none of their
	// matches names the source; Deny (Decision.Policy lists the policies).
	ReasonRulesDefault
	// ReasonUnauthenticated: the listener requires a verified client
	// certificate with a SPIFFE ID and the request has none; Deny.
	ReasonUnauthenticated
)

func (r Reason) String() string {
	switch r {
	case ReasonPolicy:
		return "policy"
	case ReasonMeshDefault:
		return "mesh-default"
	case ReasonForeignMesh:
		return "foreign-mesh"
	case ReasonRulesDefault:
		return "rules-default"
	case ReasonUnauthenticated:
		return "unauthenticated"
	}
	return "unknown"
}

// Decision is the authorization outcome for one (source, MES) pair.
type Decision struct {
	Action Action
	// Policy is the deciding MeshTrafficPermission's name; empty unless Reason is ReasonPolicy.
	Policy string
	Reason Reason
}

// Allowed reports whether traffic passes (Allow and AllowWithShadowDeny).
func (d Decision) Allowed() bool { return d.Action != Deny }

// PolicyOrReason names what decided, for logs, metadata and reply bodies.
func (d Decision) PolicyOrReason() string {
	if d.Reason == ReasonPolicy || d.Reason == ReasonRulesDefault && d.Policy != "" {
		return d.Policy
	}
	return d.Reason.String()
}

// Entry is one compiled MES. It is immutable once its Table is built.
//
// A Table keeps its entries in one array whose element size is a multiple
// of 64 bytes (Go page-aligns arrays over 32 KiB, checked by a test; in
// smaller ones alignment does not matter, they stay in cache), and a
// lookup reads only an entry's first cache line: the owner decision and the entry's first hostname, which
// the index compares the request's host with. So a hit on that name costs
// one index slot (a small, mostly cached array) and this one line.
type Entry struct {
	// owner is the decision for the Config's Source, precomputed so the
	// common request (no client certificate) costs one table lookup. Its
	// action is stored as an index into actions to leave room for key.
	ownerAction uint8
	ownerReason Reason
	// key is the entry's first hostname, lower case, zero padded, with
	// its length and hostIndex flags; klen 0 when the index keeps no key
	// here. v4Flags are the flags of the entry's first IPv4 host, port is
	// Service.Port: hostIndex reads them instead of a record of its own.
	klen        uint8
	keyFlags    uint8
	port        uint16
	v4Flags     uint8
	_           [1]byte
	ownerPolicy string
	key         [entryKey]byte
	Service     ServiceInfo
	*entryCold
	_ [entryPad]byte
}

// ServiceInfo is what an Entry keeps of its Config Service: the fields
// requests and rendering read. The SNI is not among them (compile settles
// rules' sni matches with it), which keeps Entry at three cache lines.
type ServiceInfo struct {
	Name      string
	Mesh      string
	Cluster   string
	Protocol  string
	Hostnames []string
	VIP       string
	Port      uint32
}

// entryCold is what only the client-certificate path and configuration
// rendering read.
type entryCold struct {
	// rules are the from[] entries that can apply to this MES, most
	// specific first (see precedence in compile.go).
	rules []rule
	// matches, when set, are the rules[] policies' matches for this MES:
	// they decide instead of rules and fallback.
	matches *RuleMatches
	// fallback applies when no rule matches.
	fallback Decision
	// hosts are the lookup keys that lead here, sorted.
	hosts []string
	// sni is the Config Service's SNI.
	sni string
}

// entryKey fills the first cache line after the owner decision; names up
// to this long are verified there, longer ones in the index's key arena.
const entryKey = 40

// entryPad rounds Entry up to 192 bytes on 64-bit platforms (checked by a test).
const entryPad = 8

// actions are the values of Entry.ownerAction; a power-of-two length lets
// the compiler drop the bounds check.
var actions = [4]Action{Allow, Deny, AllowWithShadowDeny, Deny}

func actionIndex(a Action) uint8 {
	switch a {
	case Allow:
		return 0
	case AllowWithShadowDeny:
		return 2
	}
	return 1
}

// Hosts lists the host keys (lower-case names and VIPs, bare and with
// port) that lead to this entry, sorted; a name shared with another MES on
// another port appears only with its port. Callers must not modify it.
func (e *Entry) Hosts() []string { return e.hosts }

// Table maps request hosts to MES and decides access. Build it with Compile;
// it is never mutated afterwards, so any number of goroutines may read it.
type Table struct {
	index    hostIndex
	slab     []Entry // the entries, contiguous; entries points into it
	entries  []*Entry
	dflt     *Entry
	source   Identity
	hostKeys int
}

// Len is the number of compiled services.
func (t *Table) Len() int { return len(t.entries) }

// HostKeys is the number of host keys (names, VIPs, with and without port).
func (t *Table) HostKeys() int { return t.hostKeys }

// Entries lists the compiled services in Config order. Callers must not modify them.
func (t *Table) Entries() []*Entry { return t.entries }

// Default is the DefaultService entry, or nil.
func (t *Table) Default() *Entry { return t.dflt }

// Source is the listener owner's identity from the Config.
func (t *Table) Source() Identity { return t.source }

// maxAuthority bounds the request hosts worth looking up: a DNS name
// (253) plus a port, with room for IPv6 brackets.
const maxAuthority = 272

// Lookup finds the MES a request's host (the :authority / Host value, with
// or without port, any case, optional trailing dot, VIP literal) names. It
// returns the DefaultService entry when nothing matches, nil when there is
// no default either. It does not allocate.
func (t *Table) Lookup(authority string) *Entry {
	if i, ok := t.index.find(authority, t.slab); ok {
		return &t.slab[i]
	}
	return t.dflt
}

// Decide returns the decision for the listener owner (the Config's Source).
func (e *Entry) Decide() Decision {
	return Decision{Action: actions[e.ownerAction&3], Policy: e.ownerPolicy, Reason: e.ownerReason}
}

// DecideFor returns the decision for another source, e.g. a SPIFFE
// identity taken from a validated client certificate. It does not allocate.
func (e *Entry) DecideFor(id *Identity) Decision {
	if id.Mesh != e.Service.Mesh {
		return Decision{Action: Deny, Reason: ReasonForeignMesh}
	}
	if e.matches != nil {
		return e.matches.decide(id)
	}
	for i := range e.rules {
		if e.rules[i].matches(id) {
			return e.rules[i].decision
		}
	}
	return e.fallback
}

// ParseSPIFFE reads a Kuma SPIFFE ID spiffe://<mesh>/<service>. The
// returned identity's strings alias uri (no copy).
func ParseSPIFFE(uri string) (Identity, bool) {
	const scheme = "spiffe://"
	if len(uri) <= len(scheme) || !strings.EqualFold(uri[:len(scheme)], scheme) {
		return Identity{}, false
	}
	rest := uri[len(scheme):]
	slash := strings.IndexByte(rest, '/')
	if slash <= 0 || slash == len(rest)-1 {
		return Identity{}, false
	}
	mesh, svc := rest[:slash], rest[slash+1:]
	if strings.IndexByte(svc, '/') >= 0 {
		return Identity{}, false
	}
	return Identity{Mesh: mesh, Service: svc}, true
}

// SPIFFEDecisions flattens the entry's rules for sources identified only
// by a SPIFFE ID spiffe://<mesh>/<service> (no tags), which is all native
// Envoy RBAC can see on a client certificate. byService holds the decision
// for every service some rule names; others applies to every other service
// of the MES's mesh. Sources from other meshes are always denied.
//
// This is exact: rules naming a service (MeshService, MeshServiceSubset and
// MeshSubset whose only tag is kuma.io/service) all outrank the rules that
// match any service (Mesh, tagless MeshSubset), and rules needing other
// tags never match a SPIFFE identity.
func (e *Entry) SPIFFEDecisions() (byService map[string]Decision, others Decision) {
	byService = map[string]Decision{}
	for i := range e.rules {
		r := &e.rules[i]
		svc, ok := r.spiffeService()
		if !ok || svc == "" {
			continue
		}
		if _, seen := byService[svc]; !seen {
			byService[svc] = r.decision
		}
	}
	others = e.fallback
	for i := range e.rules {
		if svc, ok := e.rules[i].spiffeService(); ok && svc == "" {
			others = e.rules[i].decision
			break
		}
	}
	return byService, others
}

// spiffeService says which tag-less identity a rule can match: ok=false
// for none (it needs tags), svc="" for any service of the mesh.
func (r *rule) spiffeService() (svc string, ok bool) {
	svc = r.service
	for _, t := range r.tags {
		if t.key != ServiceTag {
			return "", false
		}
		if svc != "" && svc != t.value {
			return "", false
		}
		svc = t.value
	}
	return svc, true
}

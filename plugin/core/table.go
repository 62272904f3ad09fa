package core

import (
	"strings"
	"unsafe"
)

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
)

func (r Reason) String() string {
	switch r {
	case ReasonPolicy:
		return "policy"
	case ReasonMeshDefault:
		return "mesh-default"
	case ReasonForeignMesh:
		return "foreign-mesh"
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
	if d.Reason == ReasonPolicy {
		return d.Policy
	}
	return d.Reason.String()
}

// Entry is one compiled MES. It is immutable once its Table is built.
type Entry struct {
	// owner is the decision for the Config's Source, precomputed so the
	// common request (no client certificate) costs one map lookup.
	owner Decision
	// inline holds this entry's host keys; the table's map keys point
	// here, so on a big, cold table the key compare and the decision read
	// touch adjacent cache lines instead of three scattered ones.
	inline     [inlineKeyBytes]byte
	inlineUsed int
	Service    Service
	// rules are the from[] entries that can apply to this MES, most
	// specific first (see precedence in compile.go).
	rules []rule
	// fallback applies when no rule matches.
	fallback Decision
	// hosts are the lookup keys that lead here, sorted.
	hosts []string
}

// inlineKeyBytes fits "name:port", "name", "vip:port" and "vip" for names
// up to about 50 characters; longer keys live in their own allocations.
const inlineKeyBytes = 152

// intern returns k backed by e.inline when it fits. The bytes are written
// once, before the string escapes, and never changed (strings stay
// immutable); Go's collector does not move heap objects.
func (e *Entry) intern(k string) string {
	if len(k) == 0 || e.inlineUsed+len(k) > len(e.inline) {
		return k
	}
	b := e.inline[e.inlineUsed : e.inlineUsed+len(k)]
	copy(b, k)
	e.inlineUsed += len(k)
	return unsafe.String(&b[0], len(b))
}

// Hosts lists the host keys (lower-case names and VIPs, bare and with
// port) that lead to this entry, sorted; a name shared with another MES on
// another port appears only with its port. Callers must not modify it.
func (e *Entry) Hosts() []string { return e.hosts }

// Table maps request hosts to MES and decides access. Build it with Compile;
// it is never mutated afterwards, so any number of goroutines may read it.
type Table struct {
	hosts    map[string]*Entry
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

// maxAuthority bounds the normalisation buffer: a DNS name (253) plus a
// port, with room for IPv6 brackets.
const maxAuthority = 272

// Lookup finds the MES a request's host (the :authority / Host value, with
// or without port, any case, optional trailing dot, VIP literal) names. It
// returns the DefaultService entry when nothing matches, nil when there is
// no default either. It does not allocate.
func (t *Table) Lookup(authority string) *Entry {
	if !needsNormalizing(authority) {
		if e, ok := t.hosts[authority]; ok {
			return e
		}
		return t.dflt
	}
	var buf [maxAuthority]byte
	if n := normalizeAuthority(authority, &buf); n > 0 {
		if e, ok := t.hosts[string(buf[:n])]; ok {
			return e
		}
	}
	return t.dflt
}

// needsNormalizing reports upper-case letters or a dot before the port or
// at the end: a cheap scan that saves a failing map probe (a cache miss on
// big tables) for the usual already-canonical host.
func needsNormalizing(a string) bool {
	for i := 0; i < len(a); i++ {
		c := a[i]
		if 'A' <= c && c <= 'Z' {
			return true
		}
		if c == '.' && (i == len(a)-1 || a[i+1] == ':') {
			return true
		}
	}
	return false
}

// Decide returns the decision for the listener owner (the Config's Source).
func (e *Entry) Decide() Decision { return e.owner }

// DecideFor returns the decision for another source, e.g. a SPIFFE
// identity taken from a validated client certificate. It does not allocate.
func (e *Entry) DecideFor(id *Identity) Decision {
	if id.Mesh != e.Service.Mesh {
		return Decision{Action: Deny, Reason: ReasonForeignMesh}
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

// normalizeAuthority lower-cases authority into buf, drops one trailing dot
// from the host part and keeps the port. It returns the length written, or
// 0 when the input is empty, too long or has an empty host.
func normalizeAuthority(a string, buf *[maxAuthority]byte) int {
	if len(a) == 0 || len(a) > maxAuthority {
		return 0
	}
	// Split host and port without allocating. Bracketed IPv6 first; an
	// unbracketed value with more than one colon is a bare IPv6 address.
	hostEnd := len(a)
	if a[0] == '[' {
		if j := strings.IndexByte(a, ']'); j > 0 {
			hostEnd = j + 1
		}
	} else if i := strings.LastIndexByte(a, ':'); i >= 0 && strings.IndexByte(a, ':') == i {
		hostEnd = i
	}
	host, port := a[:hostEnd], a[hostEnd:]
	if len(host) > 1 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	if len(host) == 0 {
		return 0
	}
	n := 0
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	n += copy(buf[n:], port)
	return n
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

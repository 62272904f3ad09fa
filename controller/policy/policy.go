// Package policy resolves Kuma's targetRef policies into what each proxy
// must do with each MeshExternalService, with Kuma v2.14's semantics:
//
//   - The top-level targetRef selects proxies (select.go): Mesh, Dataplane
//     (all, by name, or by labels), MeshSubset (inbound tags), MeshService
//     and MeshServiceSubset (the kuma.io/service tag), scoped by zone and,
//     for consumer and workload-owner policies, by namespace.
//   - spec.to[].targetRef selects traffic (resolve.go): the whole mesh, a
//     MeshExternalService (by name or labels), or a MeshHTTPRoute.
//   - The to[] items that apply are ordered as Kuma orders them (order.go):
//     by top-level kind, Dataplane specificity, origin, role, to[] kind, then
//     name (the lexicographically smaller name wins), and merged as a JSON
//     merge patch, more specific over less specific, field by field
//     (merge.go); MeshHTTPRoute rules merge by their matches (routes.go).
//   - Kuma's default policies are added per mesh unless skipped (defaults.go).
//
// Every effective value remembers the policy and to[] item that set it, so
// `meshext inspect` can say why a value is what it is. The package is pure:
// no I/O, deterministic output for a given input.
package policy

import (
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/meshext/meshext/controller/resource"
)

// Options tune Resolve.
type Options struct {
	// Zone is the local zone name (the kuma.io/zone label of the implicit
	// default policies); "" = "default".
	Zone string
	// SkipDefaults lists default policy kinds not to add in any mesh ("*" =
	// all), on top of each Mesh's skipCreatingInitialPolicies.
	SkipDefaults []string
}

// Resolver answers, for a proxy and a MeshExternalService, the effective
// conf of every policy kind. Build it once per resource set; it is safe for
// concurrent reads.
type Resolver struct {
	policies []resource.Policy // user policies, then implicit defaults
	defaults []resource.Policy
	routes   []*resource.MeshHTTPRoute
	roles    []string // per policy; "" when Kuma would refuse its role

	// Memos: many proxies and services share the same applicable to[]
	// items, so each distinct merge runs once (results are shared and
	// read-only).
	mu      sync.Mutex
	entries map[string]map[resource.Kind][]entry // proxy id + mesh
	confs   map[string]*Conf                     // kind + entry ids
	rules   map[string][]HTTPRule                // entry ids
	generic map[[2]int]any                       // (policy, to[] index) -> conf as plain JSON
}

// Resolve indexes the policies of set (which should hold only valid
// resources) and adds Kuma's default policies.
func Resolve(set *resource.Set, opts Options) *Resolver {
	r := &Resolver{entries: map[string]map[resource.Kind][]entry{}, confs: map[string]*Conf{}, rules: map[string][]HTTPRule{}, generic: map[[2]int]any{}}
	if set == nil {
		return r
	}
	r.policies = append(r.policies, set.Policies...)
	r.defaults = defaults(set, opts)
	r.policies = append(r.policies, r.defaults...)
	for _, p := range r.policies {
		if h, ok := p.(*resource.MeshHTTPRoute); ok {
			r.routes = append(r.routes, h)
		}
		role, err := resource.ComputePolicyRole(p)
		if err != nil {
			role = "" // validation refuses it; never selects a proxy
		}
		r.roles = append(r.roles, role)
	}
	return r
}

// Policies returns every policy the resolver uses: the user's, then the
// implicit defaults.
func (r *Resolver) Policies() []resource.Policy { return r.policies }

// Defaults returns the implicit default policies, by mesh then kind.
func (r *Resolver) Defaults() []resource.Policy { return r.defaults }

// Proxy is one Envoy that originates MeshExternalService traffic: a
// Dataplane's, or, when there are no Dataplanes, the default node, which
// serves every mesh and is selected only by a Mesh targetRef (or a
// Dataplane targetRef that names no Dataplane, which selects all); or a
// ZoneEgress's, which holds the upstream clusters of every mTLS mesh's
// services (see selectsProxy and EgressKinds).
type Proxy struct {
	// ID is the Envoy node id (controller/render's NodeID, "default", or
	// a ZoneEgress's ".<name>").
	ID        string
	Dataplane *resource.Dataplane
	// ViaEgress says the proxy's MeshExternalService traffic leaves
	// through the zone's ZoneEgresses (its mesh has mTLS): the kinds that
	// shape only the upstream cluster (ClusterKinds) apply at the egress,
	// not here.
	ViaEgress  bool
	ZoneEgress *resource.ZoneEgress
}

// Origin names the policy and to[] item a value comes from.
type Origin struct {
	Kind resource.Kind `json:"kind"`
	Mesh string        `json:"mesh"`
	Name string        `json:"name"`
	// To is the index in spec.to[].
	To int `json:"to"`
	// Source is FILE:LINE of the to[] item, or "default" for an implicit
	// default policy.
	Source string `json:"source"`
}

func originOf(p resource.Policy, to int) Origin {
	m := p.GetMeta()
	src := "default"
	if m.Source.File != "" {
		src = m.Where("spec.to[" + strconv.Itoa(to) + "]")
	}
	return Origin{Kind: m.Kind, Mesh: m.Mesh, Name: m.Name, To: to, Source: src}
}

// String is "KIND NAME to[i]".
func (o Origin) String() string {
	return string(o.Kind) + " " + o.Name + " to[" + strconv.Itoa(o.To) + "]"
}

// Field is one effective leaf value.
type Field struct {
	// Path is the field path inside the conf ("http.requestTimeout").
	Path string `json:"path"`
	// Value is the JSON value (a string, number, bool, list, or {} for an
	// empty section such as tcp: {}).
	Value  any    `json:"value"`
	Origin Origin `json:"origin"`
}

// Conf is one kind's effective conf for one destination.
type Conf struct {
	Kind resource.Kind `json:"kind"`
	// Value is the merged conf: *resource.MeshTimeoutConf, *MeshRetryConf,
	// *MeshCircuitBreakerConf, *MeshHealthCheckConf,
	// *MeshLoadBalancingStrategyConf, *MeshAccessLogConf or *TCPRouteConf.
	Value any `json:"-"`
	// Fields are the leaves of Value, in the conf's field order, each with
	// the to[] item that set it.
	Fields []Field `json:"fields"`
	// Origins are the to[] items merged, lowest precedence first.
	Origins []Origin `json:"origins"`
}

// HTTPRule is one effective MeshHTTPRoute rule: a set of matches and what
// to do with the requests they match.
type HTTPRule struct {
	Matches []resource.HTTPRouteMatch `json:"matches"`
	Conf    resource.HTTPRouteConf    `json:"default"`
	Fields  []Field                   `json:"fields"`
	// Origin is the route that defined these matches with the highest
	// precedence (Kuma names the Envoy route after it).
	Origin Origin `json:"origin"`
}

// Effective is every kind's effective conf for one proxy and one
// MeshExternalService.
type Effective struct {
	// Confs holds the kinds with at least one applicable to[] item, keyed by
	// kind (MeshHTTPRoute aside: see HTTPRules).
	Confs map[resource.Kind]*Conf `json:"confs"`
	// HTTPRules are the merged MeshHTTPRoute rules, in Kuma's merge order
	// (higher precedence first; rendering sorts them by match specificity,
	// Gateway API style, and adds the catch-all).
	HTTPRules []HTTPRule `json:"httpRules,omitempty"`
	// RouteConfs holds, per MeshHTTPRoute that contributes HTTPRules and is
	// itself the target of to[] items (MeshTimeout, MeshRetry,
	// MeshAccessLog, MeshLoadBalancingStrategy hash policies), the conf for
	// its routes: those items merged over the Mesh-wide ones. A route absent
	// here uses Confs.
	RouteConfs map[RouteKey]map[resource.Kind]*Conf `json:"routeConfs,omitempty"`
}

// RouteKey names a MeshHTTPRoute.
type RouteKey struct {
	Mesh, Name string
}

func (k RouteKey) MarshalText() ([]byte, error) { return []byte(k.Mesh + "/" + k.Name), nil }

// ConfKinds are the kinds For fills in Effective.Confs, in Kuma's plugin
// order (resource.PolicyKinds): the order rendering applies them in, so
// where two kinds set the same Envoy field (healthyPanicThreshold in
// MeshHealthCheck and MeshCircuitBreaker) the later one wins, as in Kuma.
var ConfKinds = []resource.Kind{
	resource.KindMeshTCPRoute, resource.KindMeshLoadBalancingStrategy, resource.KindMeshAccessLog,
	resource.KindMeshTimeout, resource.KindMeshHealthCheck, resource.KindMeshCircuitBreaker, resource.KindMeshRetry,
}

// EgressKinds are the kinds For fills for a ZoneEgress: those that shape
// the upstream cluster of a MeshExternalService, which in an mTLS mesh is
// the egress's (MeshTimeout's connection parts among them), and
// MeshAccessLog. Routes, retries and request timeouts stay with the
// workload's Envoy, which originates the request (Kuma's egress plugins
// are MeshCircuitBreaker, MeshHealthCheck and MeshLoadBalancingStrategy;
// meshext adds MeshTimeout's cluster side and MeshAccessLog).
var EgressKinds = []resource.Kind{
	resource.KindMeshLoadBalancingStrategy, resource.KindMeshAccessLog,
	resource.KindMeshTimeout, resource.KindMeshHealthCheck, resource.KindMeshCircuitBreaker,
}

// ClusterKinds shape only the upstream cluster of a MeshExternalService
// (and, for MeshLoadBalancingStrategy, the hash policies that go with its
// balancing). Via the egresses that cluster is the egress's: For leaves
// them out for a ViaEgress proxy. MeshTimeout, with listener and route
// parts too, stays on both.
var ClusterKinds = []resource.Kind{
	resource.KindMeshLoadBalancingStrategy, resource.KindMeshHealthCheck, resource.KindMeshCircuitBreaker,
}

// routeKinds may target a MeshHTTPRoute from spec.to[].
var routeKinds = []resource.Kind{
	resource.KindMeshLoadBalancingStrategy, resource.KindMeshAccessLog, resource.KindMeshTimeout, resource.KindMeshRetry,
}

// For computes what proxy p does with traffic to mes. It returns nil when
// p cannot reach mes (a Dataplane of another mesh). The Confs and rules it
// returns may be shared with other results: treat them as read-only. For
// a ZoneEgress it fills only EgressKinds, for a ViaEgress proxy all but
// ClusterKinds.
func (r *Resolver) For(p Proxy, mes *resource.MeshExternalService) *Effective {
	if mes == nil || (p.Dataplane != nil && p.Dataplane.Mesh != mes.Mesh) {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	byKind := r.proxyEntries(p, mes.Mesh)
	eff := &Effective{Confs: map[resource.Kind]*Conf{}}
	kinds := ConfKinds
	switch {
	case p.ZoneEgress != nil:
		kinds = EgressKinds
	case p.ViaEgress:
		kinds = slices.DeleteFunc(slices.Clone(kinds), func(k resource.Kind) bool { return slices.Contains(ClusterKinds, k) })
	}
	for _, k := range kinds {
		relevant := make([]entry, 0, len(byKind[k]))
		for _, e := range byKind[k] {
			if e.ref.Kind == resource.RefMesh || r.selectsService(e, mes) {
				relevant = append(relevant, e)
			}
		}
		if c := r.mergeConfs(k, relevant); c != nil {
			eff.Confs[k] = c
		}
	}
	if p.ZoneEgress != nil {
		return eff
	}
	var routeEntries []entry
	for _, e := range byKind[resource.KindMeshHTTPRoute] {
		if r.selectsService(e, mes) {
			routeEntries = append(routeEntries, e)
		}
	}
	eff.HTTPRules = r.mergeHTTPRules(routeEntries)

	// Per-route confs: for each route that contributes rules, the to[] items
	// aimed at it, merged over the Mesh-wide items (Kuma's lookup goes
	// route, then service, then mesh, and a route rule already holds the
	// Mesh-wide items; the service's own items do not apply to it).
	seen := map[RouteKey]bool{}
	for _, rule := range eff.HTTPRules {
		key := RouteKey{Mesh: rule.Origin.Mesh, Name: rule.Origin.Name}
		if seen[key] {
			continue
		}
		seen[key] = true
		route := r.route(key)
		if route == nil {
			continue
		}
		for _, k := range routeKinds {
			if p.ViaEgress && slices.Contains(ClusterKinds, k) {
				continue
			}
			var mesh, own []entry
			for _, e := range byKind[k] {
				switch {
				case e.ref.Kind == resource.RefMesh:
					mesh = append(mesh, e)
				case r.selectsRoute(e, route):
					own = append(own, e)
				}
			}
			if len(own) == 0 {
				continue
			}
			relevant := slices.Concat(mesh, own)
			sortEntries(relevant)
			if c := r.mergeConfs(k, relevant); c != nil {
				if eff.RouteConfs == nil {
					eff.RouteConfs = map[RouteKey]map[resource.Kind]*Conf{}
				}
				if eff.RouteConfs[key] == nil {
					eff.RouteConfs[key] = map[resource.Kind]*Conf{}
				}
				eff.RouteConfs[key][k] = c
			}
		}
	}
	return eff
}

func (r *Resolver) route(k RouteKey) *resource.MeshHTTPRoute {
	for _, h := range r.routes {
		if h.Mesh == k.Mesh && h.Name == k.Name {
			return h
		}
	}
	return nil
}

// entry is one spec.to[] item of a policy that selects the proxy.
type entry struct {
	policy resource.Policy
	ord    int // the policy's index in Resolver.policies
	index  int
	ref    resource.PolicyTargetRef
	conf   any
	role   string
}

// entriesKey identifies a list of entries, for the merge memos.
func entriesKey(prefix string, es []entry) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, e := range es {
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(e.ord))
		b.WriteByte('.')
		b.WriteString(strconv.Itoa(e.index))
	}
	return b.String()
}

func (e entry) kind() resource.Kind { return e.policy.GetMeta().Kind }

// proxyEntries returns the to[] items of mesh's policies whose top-level
// targetRef selects p, by kind, each in Kuma's merge order. Callers hold r.mu.
func (r *Resolver) proxyEntries(p Proxy, mesh string) map[resource.Kind][]entry {
	key := p.ID + "\x00" + mesh
	if byKind, ok := r.entries[key]; ok {
		return byKind
	}
	var out []entry
	for ord, pol := range r.policies {
		role := r.roles[ord]
		if pol.GetMeta().Mesh != mesh || role == "" || !selectsProxy(pol, role, p) {
			continue
		}
		for i, to := range pol.ToEntries() {
			out = append(out, entry{policy: pol, ord: ord, index: i, ref: to.TargetRef, conf: to.Conf, role: role})
		}
	}
	sortEntries(out)
	byKind := map[resource.Kind][]entry{}
	for _, e := range out {
		byKind[e.kind()] = append(byKind[e.kind()], e)
	}
	r.entries[key] = byKind
	return byKind
}

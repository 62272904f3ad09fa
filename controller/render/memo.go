package render

import (
	"bytes"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

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
//     (clusterSettings, the same key that shares it between nodes); the
//     settings are a function of the node, the service's resource (by
//     identity, so of its cluster's identity) and the worldKey, so a node
//     whose service and world are unchanged takes its shaped cluster
//     without resolving its policies again (shaped);
//   - a service's network filters and route table on a node
//     (serviceFilters) are a function of the service, the node, the
//     Options and everything in the World that is not a service
//     (worldKey: Dataplanes, ZoneEgresses, Meshes, MeshTrafficPermissions,
//     policies), as long as nothing leads them to another service or
//     outside the chain: only outside mTLS meshes and egresses, without
//     MeshHTTPRoute, MeshTCPRoute or MeshAccessLog for the pair, and when
//     rendering them left no note (filtersOf). Any service's fresh filters
//     and route tables equal by content to the last Render's for the same
//     node and service (an endpoint edit: they name the cluster, not its
//     endpoints) take the last Render's messages, in any world;
//   - a node's transparent listener (transparentOf) is a function of the
//     redirect port and, per service in order, its mesh, name, cluster
//     name, VIP, port and filters slice (by identity), all under the same
//     Options;
//   - a node's HTTP proxy listener is built on every Render and replaced
//     by the last Render's when equal by content (proxyOf).
//
// The other listeners (a Dataplane's inbounds and outbounds, a
// ZoneEgress's) are assembled on every Render.
type Memo struct {
	opts     Options
	services map[string]*memoService
	variants map[variantKey]*clusterVariant
	// world is what the filters of this epoch were rendered in
	// (worldKey); a change of world or Options starts another epoch.
	world worldKey
	epoch uint64
	// filters are the last Render's filters of every node and service:
	// fresh filters equal to them by content take their messages, and the
	// ones reusable by their inputs in this epoch are taken without
	// rendering them (filtersOf).
	filters map[filterKey]*memoFilters
	// listeners is each node's transparent listener (transparentOf).
	listeners map[string]*memoListener
	// proxies is each node's HTTP proxy listener (proxyOf).
	proxies map[string]*listenerv3.Listener
	// shaped is each node's cluster of a service (policyCluster), rendered
	// in world.
	shaped map[filterKey]*memoShaped
	// next* collect what this Render used: the memo keeps no more than one
	// Render's worth of messages.
	nextServices map[string]*memoService
	nextVariants map[variantKey]*clusterVariant
	nextFilters  map[filterKey]*memoFilters
	nextShaped   map[filterKey]*memoShaped
	// nextListeners and nextProxies are only written by node, which runs
	// on one goroutine at a time.
	nextListeners map[string]*memoListener
	nextProxies   map[string]*listenerv3.Listener
	// mu guards the next* maps against a Render's own goroutines
	// (renderer.each); the others are only read during a Render.
	mu sync.Mutex
}

type memoService struct {
	in  renderInput
	out *rendered
}

type variantKey struct {
	base     *clusterv3.Cluster
	settings string
}

// memoShaped is the cluster a node uses for a service: base itself when no
// policy shapes it (vkey zero), else the variant vkey names.
type memoShaped struct {
	base    *clusterv3.Cluster
	cluster *clusterv3.Cluster
	digest  lazyDigest
	vkey    variantKey
}

// Render is the package-level Render, reusing m's messages where their
// inputs are unchanged, then remembering this Render's.
func (m *Memo) Render(w *model.World, opts Options) (*Output, error) {
	if m != nil {
		if m.opts != opts {
			// Filters depend on the Options too (RoutesVia, Plugin, ...).
			m.services, m.variants, m.shaped = nil, nil, nil
			m.listeners, m.proxies = nil, nil
			m.epoch++
		}
		m.opts = opts
		if wk := worldKeyOf(w); !wk.equal(&m.world) {
			m.world, m.shaped = wk, nil
			m.epoch++
		}
		m.nextServices = make(map[string]*memoService, len(m.services))
		m.nextVariants = make(map[variantKey]*clusterVariant, len(m.variants))
		m.nextFilters = make(map[filterKey]*memoFilters, len(m.filters))
		m.nextShaped = make(map[filterKey]*memoShaped, len(m.shaped))
		m.nextListeners = make(map[string]*memoListener, len(m.listeners))
		m.nextProxies = make(map[string]*listenerv3.Listener, len(m.proxies))
	}
	out, err := render(w, opts, m)
	if m != nil {
		if err != nil {
			m.services, m.variants, m.filters, m.shaped = nil, nil, nil, nil
			m.listeners, m.proxies = nil, nil
			m.world = worldKey{}
		} else {
			m.services, m.variants, m.filters, m.shaped = m.nextServices, m.nextVariants, m.nextFilters, m.nextShaped
			m.listeners, m.proxies = m.nextListeners, m.nextProxies
		}
		m.nextServices, m.nextVariants, m.nextFilters, m.nextShaped = nil, nil, nil, nil
		m.nextListeners, m.nextProxies = nil, nil
	}
	return out, err
}

// worldKey is everything in a World but its services that a service's
// filters may depend on, by identity (parsed resources are never modified),
// except Kuma's implicit default policies, which Build makes anew each time
// and are compared by content.
type worldKey struct {
	valid        bool
	dataplanes   []*resource.Dataplane
	zoneEgresses []*resource.ZoneEgress
	permissions  []*resource.MeshTrafficPermission
	meshes       map[string]*resource.Mesh
	mtls         []string
	policies     []resource.Policy
	defaults     []resource.Policy
}

func worldKeyOf(w *model.World) worldKey {
	k := worldKey{valid: w != nil}
	if w == nil {
		return k
	}
	k.dataplanes, k.zoneEgresses, k.permissions, k.meshes = w.Dataplanes, w.ZoneEgresses, w.Permissions, w.Meshes
	for mesh, mt := range w.MTLS {
		if mt != nil {
			k.mtls = append(k.mtls, mesh)
		}
	}
	slices.Sort(k.mtls)
	if w.Policies != nil {
		all, defaults := w.Policies.Policies(), w.Policies.Defaults()
		k.policies, k.defaults = all[:len(all)-len(defaults)], defaults
	}
	return k
}

func (k *worldKey) equal(o *worldKey) bool {
	return k.valid && o.valid && slices.Equal(k.dataplanes, o.dataplanes) && slices.Equal(k.zoneEgresses, o.zoneEgresses) &&
		slices.Equal(k.permissions, o.permissions) && maps.Equal(k.meshes, o.meshes) && slices.Equal(k.mtls, o.mtls) &&
		slices.Equal(k.policies, o.policies) && reflect.DeepEqual(k.defaults, o.defaults)
}

type filterKey struct{ node, cluster string }

// memoFilters is one service's filters on one node, with the route tables
// rendering them added to the node.
type memoFilters struct {
	in      renderInput
	filters []*listenerv3.Filter
	routes  []*routev3.RouteConfiguration
	closed  bool
	// byInput: reusable by in, in epoch (filtersOf).
	byInput bool
	epoch   uint64
}

// filtersOf is serviceFilters through the memo (see Memo for when).
func (r *renderer) filtersOf(n *Node, s *model.Service) ([]*listenerv3.Filter, bool, error) {
	key := filterKey{node: n.ID, cluster: s.ClusterName()}
	reusable := r.memo != nil && r.reusableFilters(n, s)
	if reusable {
		if e := r.memo.keptFilters(key, s); e != nil {
			r.memo.keepFilters(key, e, true)
			n.Routes = append(n.Routes, e.routes...)
			return e.filters, e.closed, nil
		}
	}
	routes, before := len(n.Routes), r.nodeState(n)
	f, closed, err := r.serviceFilters(n, s)
	if err != nil || r.memo == nil {
		return f, closed, err
	}
	e := &memoFilters{in: inputOf(s), filters: slices.Clip(f), closed: closed, routes: slices.Clone(n.Routes[routes:])}
	// An edit that does not show in the filters (an endpoint's port: they
	// name the cluster) keeps the last Render's messages, so the listeners
	// holding them are reused as well (transparentOf).
	if old := r.memo.filters[key]; old != nil && old.sameContent(e) {
		e.filters, e.routes = old.filters, old.routes
		f = old.filters
		copy(n.Routes[routes:], old.routes)
	}
	r.memo.keepFilters(key, e, reusable && r.nodeState(n) == before)
	return f, closed, err
}

// sameContent reports whether e and o are the same filters and route
// tables by content.
func (e *memoFilters) sameContent(o *memoFilters) bool {
	return e.closed == o.closed && protoSlicesEqual(e.filters, o.filters) && protoSlicesEqual(e.routes, o.routes)
}

func protoSlicesEqual[T proto.Message](a, b []T) bool {
	return slices.EqualFunc(a, b, func(x, y T) bool { return proto.Equal(x, y) })
}

// nodeStamp is what building filters may add to a node besides them.
type nodeStamp struct {
	notes int
	fifo  string
	otel  *otelClusters
}

func (r *renderer) nodeState(n *Node) nodeStamp {
	r.pol.mu.Lock()
	defer r.pol.mu.Unlock()
	return nodeStamp{notes: len(r.pol.notes[n.ID]), fifo: r.pol.fifo[n.ID], otel: r.pol.otel[n.ID]}
}

// keptFilters is the last Render's filters of service s on node k.node in
// this world, if s is unchanged.
func (m *Memo) keptFilters(k filterKey, s *model.Service) *memoFilters {
	if m == nil {
		return nil
	}
	if e := m.filters[k]; e != nil && e.byInput && e.epoch == m.epoch && e.in.equal(s) {
		return e
	}
	return nil
}

// keepFilters keeps e for the next Render: by content, and by its inputs
// if byInput (then e is from this epoch, or is set to it).
func (m *Memo) keepFilters(k filterKey, e *memoFilters, byInput bool) {
	if byInput && !e.byInput {
		e.byInput, e.epoch = true, m.epoch
	}
	m.mu.Lock()
	m.nextFilters[k] = e
	m.mu.Unlock()
}

// reusableFilters reports whether s's filters on n depend on nothing but
// s, n and the worldKey: no egress hop, and no policy kind that leads to
// other services (routes) or registers node-wide state (access logs).
func (r *renderer) reusableFilters(n *Node, s *model.Service) bool {
	if n.ZoneEgress != nil || r.world.MTLS[s.Mesh] != nil {
		return false
	}
	// Kept last time for the same service in the same world: reusable then,
	// so now (no policy to resolve again).
	if r.memo.keptFilters(filterKey{node: n.ID, cluster: s.ClusterName()}, s) != nil {
		return true
	}
	eff := r.policiesFor(n, s)
	return eff == nil || (len(eff.HTTPRules) == 0 && len(eff.RouteConfs) == 0 &&
		eff.Confs[resource.KindMeshTCPRoute] == nil && eff.Confs[resource.KindMeshHTTPRoute] == nil &&
		eff.Confs[resource.KindMeshAccessLog] == nil)
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
		m.mu.Lock()
		m.nextVariants[k] = v
		m.mu.Unlock()
	}
	return v
}

// shapedCluster is the cluster node k.node used for service k.cluster last
// time, if it was shaped from base (the same service) in the same world;
// its variant stays remembered for the nodes that resolve their policies.
func (m *Memo) shapedCluster(k filterKey, base *clusterv3.Cluster) *memoShaped {
	if m == nil {
		return nil
	}
	e := m.shaped[k]
	if e == nil || e.base != base {
		return nil
	}
	m.mu.Lock()
	m.nextShaped[k] = e
	if e.vkey.base != nil {
		if v := m.variants[e.vkey]; v != nil {
			m.nextVariants[e.vkey] = v
		}
	}
	m.mu.Unlock()
	return e
}

func (m *Memo) keepShaped(k filterKey, e *memoShaped) {
	if m != nil {
		m.mu.Lock()
		m.nextShaped[k] = e
		m.mu.Unlock()
	}
}

func (m *Memo) keepVariant(k variantKey, v *clusterVariant) {
	if m != nil {
		m.mu.Lock()
		m.nextVariants[k] = v
		m.mu.Unlock()
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

// memoListener is a node's transparent listener and what it was assembled
// from.
type memoListener struct {
	port     uint32
	chains   []chainInput
	listener *listenerv3.Listener
	warnings []string
}

// chainInput is everything transparent reads of one service: the filters
// by identity (filters are never modified once rendered, and the memo
// holding the slice keeps its array from being reused).
type chainInput struct {
	mesh, name, cluster string
	vip                 netip.Addr
	port                uint32
	filters             **listenerv3.Filter // the slice's first element
	nfilters            int
}

func chainInputOf(s *model.Service, f []*listenerv3.Filter) chainInput {
	in := chainInput{mesh: s.Mesh, name: s.Name, cluster: s.ClusterName(), vip: s.VIP, port: s.Port, nfilters: len(f)}
	if len(f) > 0 {
		in.filters = &f[0]
	}
	return in
}

// transparentOf is transparent through the memo: the last Render's
// listener of the node when it was assembled from the same services, ports
// and filter slices, so nothing of its size is built, validated or hashed
// again after an edit that does not show in it.
func (r *renderer) transparentOf(node string, port uint32, ready []*rendered, filters map[*model.Service][]*listenerv3.Filter) (*listenerv3.Listener, []string, error) {
	if r.memo == nil {
		return r.transparent(port, ready, filters)
	}
	e := &memoListener{port: port, chains: make([]chainInput, len(ready))}
	for i, rs := range ready {
		e.chains[i] = chainInputOf(rs.svc, filters[rs.svc])
	}
	if old := r.memo.listeners[node]; old != nil && old.port == e.port && slices.Equal(old.chains, e.chains) {
		// Keep the slices of the entry whose listener holds them.
		r.memo.nextListeners[node] = old
		return old.listener, old.warnings, nil
	}
	l, warnings, err := r.transparent(port, ready, filters)
	if err != nil {
		return nil, nil, err
	}
	e.listener, e.warnings = l, warnings
	r.memo.nextListeners[node] = e
	return l, warnings, nil
}

// proxyOf keeps the last Render's HTTP proxy listener of node in place of
// l when they are equal by content (its filter is one packed Any, cheap to
// compare), so the validator and delivery take it by identity.
func (m *Memo) proxyOf(node string, l *listenerv3.Listener) *listenerv3.Listener {
	if m == nil {
		return l
	}
	if old := m.proxies[node]; old != nil && proto.Equal(old, l) {
		l = old
	}
	m.nextProxies[node] = l
	return l
}

// Package render turns a model.World into Envoy configuration: per Envoy node
// (one per Dataplane, or "default"), the clusters, listeners and SDS secrets
// of every MeshExternalService, validated message by message before packing.
// Bootstraps for file-based xDS, ADS, and fully static configs live in
// bootstrap.go; JSON encodings of DiscoveryResponses in encode.go.
//
// Rendering fixes the Kuma quirks listed in the reference notes (F1-F11); the
// comment at each fix names it. The deliberate decisions in short:
//
//   - F1: Secured/SkipSAN without any CA is not rendered (service Broken).
//   - F2: tls_params in every mode; TLSAuto = TLSv1_2..TLSv1_3.
//   - F3: SkipCA = trusted_ca + ACCEPT_UNTRUSTED + SAN matchers; Envoy only
//     counts SAN mismatches then (the Rendered condition says so).
//   - F4: one typed SAN matcher per value (URI / IP_ADDRESS / DNS).
//   - F5: SNI = serverName, else auto_host_sni per endpoint.
//   - F6: ALPN h2 (grpc, http2), http/1.1 (http), none (tcp).
//   - F7: CA and client cert/key are SDS secrets, never inline in clusters.
//   - F8: SkipSAN keeps serverName.
//   - F9: explicit SANs replace the implicit name check, never widen it.
//   - F11: default outlier detection, so priority failover has a signal.
//   - SkipAll keeps the client certificate (Kuma drops it).
//
// Egress authorization plugs in at authzFilters (authz.go): every MES
// listener is authorized for its node's Dataplane (SourceIdentity) from
// AuthzConfig. There the decision is made when rendering: no filter where
// allowed, a direct 403 / gRPC 7 route or a closed connection where denied
// (authz_static.go), and the per-request filter (the meshext Go filter with
// Options.Plugin on, per Options.Flavor, or native RBAC) only for a shadow
// denial. Options.RoutesVia puts the route tables in RDS (routes.go), so a
// changed decision reaches open connections. Options.HTTPProxyListen adds a
// forward-proxy listener (proxy.go) matching requests' hosts against every
// HTTP MES, decided per request.
package render

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/parallel"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/xds"
)

// How clusters reference their SDS secrets.
const (
	// SecretsADS: secrets come over the ADS stream (meshext run --xds ads).
	SecretsADS = "ads"
	// SecretsFile: each secret is a DiscoveryResponse file <SecretsDir>/<name>.json.
	SecretsFile = "file"
)

// DefaultNodeID is the node rendered when there are no Dataplanes.
const DefaultNodeID = "default"

// DefaultRedirectPortOutbound is Kuma's transparent-proxy outbound port.
const DefaultRedirectPortOutbound = 15001

// Options shape the rendered config.
type Options struct {
	// UpstreamDNS ("ADDR:PORT") is the resolver STRICT_DNS clusters use; "" keeps
	// Envoy's default (the host's resolv.conf). Tests point it at the embedded DNS.
	UpstreamDNS string
	// SecretsVia is SecretsADS (default) or SecretsFile.
	SecretsVia string
	// SecretsDir is the absolute directory of the secret files for SecretsFile.
	SecretsDir string
	// Flavor is FlavorStock ("" = stock) or FlavorContrib: which build of
	// Envoy the meshext filter config targets.
	Flavor string
	// Plugin is PluginOn, PluginOff, or the path of the contrib library
	// (implies on). "" is PluginOff: the zero Options need no Go module in
	// Envoy and still enforce MeshTrafficPermissions with native RBAC; the
	// meshext CLI defaults to on. TCP services always get native network RBAC.
	Plugin string
	// HTTPProxyListen ("IP:PORT") adds the HTTP forward-proxy listener to
	// every node ("" = none).
	HTTPProxyListen string
	// RoutesVia is RoutesInline ("" = inline), RoutesADS or RoutesFile: how
	// a workload's service listeners get their route tables (routes.go).
	RoutesVia string
	// RoutesDir is the absolute xds directory of the route files for
	// RoutesFile (xds.RoutePath).
	RoutesDir string
	// FileFormat is how the secret and route files named by SecretsFile and
	// RoutesFile are encoded ("" = JSON): the paths carry its extension.
	FileFormat xds.Format
	// AccessLogFIFODir is the absolute directory of the access-log relay's
	// FIFOs (AccessLogFIFO): MeshAccessLog Tcp backends write there, and
	// are left out (with a warning) when it is "".
	AccessLogFIFODir string
}

// Check reports bad Options (Render returns the same error).
func (o *Options) Check() error {
	_, err := o.check()
	return err
}

func (o *Options) check() (dns netip.AddrPort, err error) {
	if o.UpstreamDNS != "" {
		dns, err = netip.ParseAddrPort(o.UpstreamDNS)
		if err != nil {
			return dns, fmt.Errorf("upstream DNS %q: want IP:PORT: %v", o.UpstreamDNS, err)
		}
	}
	switch o.SecretsVia {
	case "", SecretsADS:
	case SecretsFile:
		if o.SecretsDir == "" || !filepath.IsAbs(o.SecretsDir) {
			return dns, fmt.Errorf("secrets via file needs an absolute secrets directory, got %q", o.SecretsDir)
		}
	default:
		return dns, fmt.Errorf("secrets via %q: want %q or %q", o.SecretsVia, SecretsADS, SecretsFile)
	}
	if o.AccessLogFIFODir != "" && !filepath.IsAbs(o.AccessLogFIFODir) {
		return dns, fmt.Errorf("access-log FIFO directory %q: must be absolute", o.AccessLogFIFODir)
	}
	if o.HTTPProxyListen != "" {
		if _, err := netip.ParseAddrPort(o.HTTPProxyListen); err != nil {
			return dns, fmt.Errorf("http proxy listen %q: want IP:PORT: %v", o.HTTPProxyListen, err)
		}
	}
	if err := o.checkRoutes(); err != nil {
		return dns, err
	}
	return dns, o.checkAuthz()
}

// Output is the config of every Envoy node.
type Output struct {
	// Nodes is keyed by Envoy node id: "<mesh>.<name>" per Dataplane, or "default".
	Nodes map[string]*Node
	// Warnings are problems that skipped part of a node (for example an outbound
	// naming a missing or broken MeshExternalService).
	Warnings []string
}

// Version is a hash of the deterministic encoding of every resource of the
// node: two nodes with the same resources have the same version.
func (n *Node) Version() (string, error) {
	if n.version == nil {
		return "", fmt.Errorf("node %s: no version (not from Render)", n.ID)
	}
	return n.version()
}

// setVersion makes n's Version from the digests of its placed clusters (its
// first nsvc; with their secrets, each computed once per cluster and
// setting) and of the rest of its resources: listeners, route tables, the
// secrets too when withSecrets (an egress's: its mesh CA and identity), and
// the other clusters, digested when Version is first called.
func (n *Node) setVersion(placed []lazyDigest, nsvc int, withSecrets bool) {
	n.version = sync.OnceValues(func() (string, error) {
		parts := make([][]byte, 0, len(placed)+1)
		for _, p := range placed {
			d, err := p()
			if err != nil {
				return "", fmt.Errorf("node %s: %w", n.ID, err)
			}
			parts = append(parts, d)
		}
		own := make([]proto.Message, 0, len(n.Listeners)+len(n.Routes)+len(n.Secrets)+len(n.Clusters)-nsvc)
		for _, l := range n.Listeners {
			own = append(own, l)
		}
		for _, rc := range n.Routes {
			own = append(own, rc)
		}
		if withSecrets {
			for _, sec := range n.Secrets {
				own = append(own, sec)
			}
		}
		for _, c := range n.Clusters[nsvc:] {
			own = append(own, c)
		}
		d, err := digest(own...)
		if err != nil {
			return "", fmt.Errorf("node %s: %w", n.ID, err)
		}
		return hexDigest(append(parts, d)...), nil
	})
}

// NodeIDs returns the node ids in sorted order.
func (o *Output) NodeIDs() []string {
	ids := make([]string, 0, len(o.Nodes))
	for id := range o.Nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Node is one Envoy's resources. Clusters are shared between nodes of the same
// mesh: treat every message as read-only.
type Node struct {
	ID        string
	Clusters  []*clusterv3.Cluster
	Listeners []*listenerv3.Listener
	// Routes are the route tables the listeners name through RDS
	// (Options.RoutesVia; none inline).
	Routes  []*routev3.RouteConfiguration
	Secrets []*tlsv3.Secret
	// version is Version's work, done on the first call: meshext run never
	// asks (its versions come from the xds package's hashes), and at 10k
	// HTTP services the node's own part alone marshals megabytes per reload.
	version func() (string, error)
	// AdminPort is the Dataplane's admin.port (0 = not set; the bootstrap picks).
	AdminPort uint32
	// Dataplane is the source Dataplane (nil for the default node).
	Dataplane *resource.Dataplane
	// ZoneEgress is set on a ZoneEgress's node (see egress.go).
	ZoneEgress *resource.ZoneEgress
	// AccessLogFIFO is the access-log relay FIFO this node's Tcp access-log
	// backends write to ("" = none): it must have a reader before Envoy
	// gets the config (see controller/accesslog).
	AccessLogFIFO string
}

// Condition written on each service by Render.
const (
	ConditionRendered = "Rendered"
	ReasonRendered    = "Rendered"
	ReasonRenderError = "RenderError"
	ReasonBroken      = "Broken"
)

// rendered is one service's node-independent resources.
type rendered struct {
	svc     *model.Service
	cluster *clusterv3.Cluster
	secrets []*tlsv3.Secret
	// digest is the cluster's and secrets' (Node.Version; see lazyDigest).
	digest lazyDigest
}

// Render builds every node's config. A service that cannot be rendered is
// marked Broken with a Rendered=False condition and skipped; the others are
// unaffected. Render records conditions on w's services, so callers must not
// render one World concurrently. The error is only for bad Options.
func Render(w *model.World, opts Options) (*Output, error) {
	return (*Memo)(nil).Render(w, opts)
}

func render(w *model.World, opts Options, memo *Memo) (*Output, error) {
	if w == nil {
		return nil, fmt.Errorf("render: nil world")
	}
	dns, err := opts.check()
	if err != nil {
		return nil, err
	}
	r := &renderer{opts: opts, dns: dns, world: w, shared: &sharedMemo{}, pol: newPolicyState(), memo: memo}
	var services []*rendered
	// Each service renders on its own (r.each); the memo and the checks
	// below run serially in World order, so warnings, conditions and the
	// memo come out as from one goroutine.
	var live []*model.Service
	for _, s := range w.Services {
		if s.Broken != "" {
			if msg, ok := strings.CutPrefix(s.Broken, renderBrokenPrefix); ok {
				setRendered(s, "False", ReasonRenderError, msg) // broken by an earlier Render of this World
			} else {
				setRendered(s, "False", ReasonBroken, s.Broken)
			}
			continue
		}
		live = append(live, s)
	}
	kept := make([]*rendered, len(live))
	fresh := make([]bool, len(live))
	for i, s := range live {
		kept[i] = memo.service(s)
		fresh[i] = kept[i] == nil
	}
	errs := make([]error, len(live))
	r.each(len(live), func(i int) {
		if fresh[i] {
			kept[i], errs[i] = r.service(live[i])
		}
	})
	// clusters backs up model.Build's check that cluster names are unique
	// (a World built by hand skips it): Envoy rejects a duplicate cluster
	// with the whole update.
	clusters := map[string]*model.Service{}
	for i, s := range live {
		rs, err := kept[i], errs[i]
		if err == nil && fresh[i] {
			memo.keepService(s, rs)
		}
		if err == nil {
			if o := clusters[rs.cluster.Name]; o != nil {
				err = fmt.Errorf("Envoy cluster name %q is already used by MeshExternalService %s/%s", rs.cluster.Name, o.Mesh, o.Name)
			}
		}
		if err != nil {
			s.Broken = renderBrokenPrefix + err.Error()
			setRendered(s, "False", ReasonRenderError, err.Error())
			// Keep model's invariant: Ready is False exactly when Broken is set.
			setCondition(s, model.Condition{Type: model.ConditionReady, Status: model.StatusFalse, Reason: "Broken", Message: s.Broken})
			continue
		}
		setRendered(s, "True", ReasonRendered, tlsNote(s))
		clusters[rs.cluster.Name] = s
		services = append(services, rs)
	}

	out := &Output{Nodes: map[string]*Node{}}
	for _, z := range w.ZoneEgresses {
		n, warn, err := r.egressNode(z, services)
		if err != nil {
			return nil, err
		}
		out.Nodes[n.ID] = n
		out.Warnings = append(out.Warnings, warn...)
	}
	if len(w.Dataplanes) == 0 {
		n, warn, err := r.node(DefaultNodeID, nil, services)
		if err != nil {
			return nil, err
		}
		out.Nodes[n.ID] = n
		out.Warnings = append(out.Warnings, warn...)
		return out, nil
	}
	for _, dp := range w.Dataplanes {
		var mine []*rendered
		for _, rs := range services {
			if rs.svc.Mesh == dp.Mesh {
				mine = append(mine, rs)
			}
		}
		id := NodeID(dp)
		if _, dup := out.Nodes[id]; dup {
			out.Warnings = append(out.Warnings, fmt.Sprintf("node %s: second Dataplane with this id skipped", id))
			continue
		}
		n, warn, err := r.node(id, dp, mine)
		if err != nil {
			return nil, err
		}
		out.Nodes[id] = n
		out.Warnings = append(out.Warnings, warn...)
	}
	return out, nil
}

// NodeID is the Envoy node id of a Dataplane: "<mesh>.<name>" (names.NodeID;
// model.Build keeps one Dataplane per id).
func NodeID(dp *resource.Dataplane) string { return names.NodeID(dp.Mesh, dp.Name) }

// setRendered replaces the service's Rendered condition, so rendering the same
// World twice does not stack conditions.
func setRendered(s *model.Service, status, reason, msg string) {
	setCondition(s, model.Condition{Type: ConditionRendered, Status: status, Reason: reason, Message: msg})
}

// renderBrokenPrefix marks a Broken reason that Render itself set.
const renderBrokenPrefix = "render: "

// setCondition replaces the condition of c's type, or appends it.
func setCondition(s *model.Service, c model.Condition) {
	for i := range s.Conditions {
		if s.Conditions[i].Type == c.Type {
			s.Conditions[i] = c
			return
		}
	}
	s.Conditions = append(s.Conditions, c)
}

type renderer struct {
	opts  Options
	dns   netip.AddrPort
	world *model.World
	// shared holds messages that are identical everywhere (the router),
	// packed once per Render and referenced by every filter.
	shared *sharedMemo
	// pol is the policy memo (policy.go).
	pol *policyState
	// memo holds the last Render's messages (nil = none; memo.go).
	memo *Memo
	// caSecrets are the trust-anchor secrets and their SDS references,
	// validated once per CA (tls.go); timeoutOptions the upstream protocol
	// options MeshTimeout repacks, once per base and timeouts
	// (policy_timeout.go). Clusters share them read-only.
	caSecrets      keyed[caKey, caShared]
	timeoutOptions keyed[timeoutKey, *anypb.Any]
	// settings are clusterSettings by the confs they encode (policy.go).
	settings keyed[settingsKey, string]
	// onNode are the services whose clusters the node being built holds:
	// the destinations its routes may lead to.
	onNode []*rendered
}

// keyed builds each value once per key. Services render on several
// goroutines (r.each): a value two of them build at once is kept once, and
// both get the kept one. build runs unlocked, as it may get other values.
// An error is not remembered: its message may name the caller's resource.
// Keys are names (sharedMemo) or identities (a shared input's address).
// The zero value is ready.
type keyed[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

// sharedMemo is keyed by name, for values of any type.
type sharedMemo = keyed[string, any]

func (k *keyed[K, V]) get(key K, build func() (V, error)) (V, error) {
	k.mu.Lock()
	v, ok := k.m[key]
	k.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := build()
	if err != nil {
		var zero V
		return zero, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.m[key]; ok {
		return old, nil // another goroutine's: every user shares one message
	}
	if k.m == nil {
		k.m = map[K]V{}
	}
	k.m[key] = v
	return v, nil
}

// parallelMin is the fewest services whose per-service work r.each spreads
// over the cores: below it, starting goroutines costs more than it saves.
// A variable for the test that renders small worlds both ways.
var parallelMin = 64

// each runs f(i) for i in [0, n), on every core when n is large enough.
// f writes only its own slot; the renderer's caches it fills are locked.
func (r *renderer) each(n int, f func(i int)) {
	if n < parallelMin {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	parallel.ForEach(n, f)
}

// service renders the node-independent part of one service: its cluster and secrets.
func (r *renderer) service(s *model.Service) (*rendered, error) {
	c, secrets, err := r.serviceCluster(s)
	if err != nil {
		return nil, err
	}
	return &rendered{svc: s, cluster: c, secrets: secrets, digest: digestLater(c, secrets)}, nil
}

// node assembles one Envoy's resources. dp is nil for the default node.
func (r *renderer) node(id string, dp *resource.Dataplane, services []*rendered) (*Node, []string, error) {
	n := &Node{ID: id, Dataplane: dp}
	var warnings []string
	// Network filters per service, built once per node and shared by the
	// transparent chain and any outbound listener of the same service.
	filters := map[*model.Service][]*listenerv3.Filter{}
	denied := false // some tcp chain goes to DeniedCluster
	var ready []*rendered
	secretSeen := map[string]bool{}
	// Clusters first: a route of one service may lead to another's cluster.
	var placed []*rendered
	// parts are the digests of the placed clusters and their secrets, in
	// n.Clusters order (see Version below).
	var parts []lazyDigest
	type onNode struct {
		cluster *clusterv3.Cluster
		secrets []*tlsv3.Secret
		digest  lazyDigest
		err     error
	}
	shaped := make([]onNode, len(services))
	r.each(len(services), func(i int) {
		s := &shaped[i]
		s.cluster, s.secrets, s.digest, s.err = r.serviceOnNode(n, services[i])
	})
	for i, rs := range services {
		cluster, secrets, d, err := shaped[i].cluster, shaped[i].secrets, shaped[i].digest, shaped[i].err
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("node %s: %s/%s: %v (service skipped on this node)", id, rs.svc.Mesh, rs.svc.Name, err))
			continue
		}
		placed = append(placed, rs)
		parts = append(parts, d)
		n.Clusters = append(n.Clusters, cluster)
		for _, sec := range secrets {
			// Shared secrets (a system CA bundle, the mesh CA) are listed once per node.
			if !secretSeen[sec.Name] {
				secretSeen[sec.Name] = true
				n.Secrets = append(n.Secrets, sec)
			}
		}
	}
	r.onNode = placed
	// A service whose filters depend on nothing but itself and the node
	// (reusableFilters) gets them on any goroutine, its route tables on a
	// scratch node; the others may note warnings, register access-log
	// clusters or look at other services, so they are built here in order.
	type chain struct {
		filters []*listenerv3.Filter
		routes  []*routev3.RouteConfiguration
		closed  bool
		err     error
		done    bool
	}
	chains := make([]chain, len(placed))
	if len(placed) >= parallelMin {
		r.each(len(placed), func(i int) {
			if !r.reusableFilters(n, placed[i].svc) {
				return
			}
			scratch := &Node{ID: n.ID, Dataplane: n.Dataplane, ZoneEgress: n.ZoneEgress}
			c := &chains[i]
			c.filters, c.closed, c.err = r.filtersOf(scratch, placed[i].svc)
			c.routes, c.done = scratch.Routes, true
		})
	}
	for i, rs := range placed {
		c := chains[i]
		if c.done {
			n.Routes = append(n.Routes, c.routes...)
		} else {
			c.filters, c.closed, c.err = r.filtersOf(n, rs.svc)
		}
		if c.err != nil {
			warnings = append(warnings, fmt.Sprintf("node %s: %s/%s: %v (service skipped on this node)", id, rs.svc.Mesh, rs.svc.Name, c.err))
			continue
		}
		filters[rs.svc] = c.filters
		denied = denied || c.closed
		ready = append(ready, rs)
	}
	nsvc := len(n.Clusters)

	redirect := uint32(DefaultRedirectPortOutbound)
	if dp != nil {
		if tp := dp.Networking.TransparentProxying; tp != nil && tp.RedirectPortOutbound > 0 {
			redirect = uint32(tp.RedirectPortOutbound)
		}
		if a := dp.Networking.Admin; a != nil && a.Port > 0 {
			n.AdminPort = uint32(a.Port)
		}
		inboundClusters := map[string]bool{}
		for i, in := range dp.Networking.Inbound {
			l, c, err := r.inbound(dp, in)
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("node %s: networking.inbound[%d]: %v (skipped)", id, i, err))
				continue
			}
			n.Listeners = append(n.Listeners, l)
			// Inbounds forwarding to one service address share its cluster
			// (the name is the address, so the content is the same).
			if !inboundClusters[c.Name] {
				inboundClusters[c.Name] = true
				n.Clusters = append(n.Clusters, c)
			}
		}
		refs := byRefName(ready)
		for i, ob := range dp.Networking.Outbound {
			if ob.BackendRef == nil || ob.BackendRef.Kind != string(resource.KindMeshExternalService) {
				continue
			}
			rs := refs[ob.BackendRef.Name]
			if rs == nil {
				warnings = append(warnings, fmt.Sprintf("node %s: networking.outbound[%d]: MeshExternalService %q is missing or not rendered (no listener)", id, i, ob.BackendRef.Name))
				continue
			}
			l, err := r.outbound(dp, ob, rs.svc, filters[rs.svc])
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("node %s: networking.outbound[%d]: %v (skipped)", id, i, err))
				continue
			}
			n.Listeners = append(n.Listeners, l)
		}
	}
	tl, warn, err := r.transparentOf(id, redirect, ready, filters)
	if err != nil {
		return nil, nil, err
	}
	warnings = append(warnings, prefixAll("node "+id+": ", warn)...)
	n.Listeners = append(n.Listeners, tl)
	if r.opts.HTTPProxyListen != "" {
		pl, warn, err := r.httpProxy(n, ready)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("node %s: %v (no HTTP proxy listener)", id, err))
		} else {
			n.Listeners = append(n.Listeners, r.memo.proxyOf(id, pl))
			warnings = append(warnings, prefixAll("node "+id+": ", warn)...)
		}
	}
	uc, err := unknownDestinationCluster()
	if err != nil {
		return nil, nil, err
	}
	n.Clusters = append(n.Clusters, uc)
	if denied {
		dc, err := emptyCluster(DeniedCluster)
		if err != nil {
			return nil, nil, err
		}
		n.Clusters = append(n.Clusters, dc)
	}
	oc, err := r.accessLogClusters(n)
	if err != nil {
		return nil, nil, err
	}
	n.Clusters = append(n.Clusters, oc...)
	n.AccessLogFIFO = r.pol.fifo[n.ID]
	n.Listeners, warn = dedupeListeners(n.Listeners)
	warnings = append(warnings, prefixAll("node "+id+": ", warn)...)
	warnings = append(warnings, prefixAll("node "+id+": ", r.pol.notes[id])...)

	n.setVersion(parts, nsvc, false)
	return n, warnings, nil
}

// serviceOnNode is the cluster and secrets node n uses for rs, with their
// digest: in direct mode rs's own cluster as n's policies shape it
// (policyCluster); in an mTLS mesh a cluster to the zone's egresses with the
// node's identity, which keeps its egress-failover settings: the
// cluster-side policies shape the egress's upstream cluster instead. The
// default node has no identity, so it serves no service of an mTLS mesh.
func (r *renderer) serviceOnNode(n *Node, rs *rendered) (*clusterv3.Cluster, []*tlsv3.Secret, lazyDigest, error) {
	if r.world.MTLS[rs.svc.Mesh] == nil {
		c, d, err := r.policyCluster(n, rs)
		return c, rs.secrets, d, err
	}
	if n.Dataplane == nil {
		return nil, nil, nil, fmt.Errorf("mesh %q has mTLS on: its traffic leaves through a ZoneEgress with a Dataplane's identity, and the default node has none (add a Dataplane)", rs.svc.Mesh)
	}
	c, secrets, err := r.workloadCluster(rs.svc, n.ID)
	if err != nil {
		return nil, nil, nil, err
	}
	return c, secrets, digestLater(c, secrets), nil
}

// byRefName indexes services by the names a Dataplane backendRef may use: the
// resource name, and its display name (kuma.io/display-name on
// Kubernetes-style resources). A name wins over another service's display name.
func byRefName(services []*rendered) map[string]*rendered {
	idx := make(map[string]*rendered, len(services))
	for _, rs := range services {
		if rs.svc.Resource != nil {
			if dn := rs.svc.Resource.DisplayName(); dn != "" {
				if _, taken := idx[dn]; !taken {
					idx[dn] = rs
				}
			}
		}
	}
	for _, rs := range services {
		idx[rs.svc.Name] = rs
	}
	return idx
}

func prefixAll(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + s
	}
	return out
}

// hostIsIP reports whether an address is an IP literal.
func hostIsIP(a string) bool {
	_, err := netip.ParseAddr(a)
	return err == nil
}

// unixPath strips the unix:// scheme if the model kept it.
func unixPath(a string) string { return strings.TrimPrefix(a, resource.UnixPrefix) }

// dedupeListeners drops a listener whose name or address an earlier one
// already has: Envoy would reject the second, and with static config the
// whole file. The transparent listener comes last, so a Dataplane listener on
// its port wins and the warning says so.
func dedupeListeners(ls []*listenerv3.Listener) ([]*listenerv3.Listener, []string) {
	var warnings []string
	names := map[string]bool{}
	addrs := map[string]string{}
	out := ls[:0]
	for _, l := range ls {
		sa := l.GetAddress().GetSocketAddress()
		addr := sa.GetAddress() + ":" + strconv.FormatUint(uint64(sa.GetPortValue()), 10)
		if names[l.Name] {
			warnings = append(warnings, fmt.Sprintf("listener %s: duplicate name (skipped)", l.Name))
			continue
		}
		if other, dup := addrs[addr]; dup {
			warnings = append(warnings, fmt.Sprintf("listener %s: address %s already used by %s (skipped)", l.Name, addr, other))
			continue
		}
		names[l.Name] = true
		addrs[addr] = l.Name
		out = append(out, l)
	}
	return out, warnings
}

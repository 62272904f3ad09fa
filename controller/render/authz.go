package render

import (
	"fmt"
	"sort"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
	"github.com/meshext/meshext/plugin/rbac"
	"github.com/meshext/meshext/plugin/xdsfilter"
)

// Envoy flavors (Options.Flavor): which build of Envoy the config targets.
const (
	// FlavorStock: the stock Envoy binary; the meshext filter is the dynamic
	// module libmeshext.so, found through ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
	FlavorStock = "stock"
	// FlavorContrib: Envoy's contrib build; the filter is envoy.filters.http.golang
	// loading libmeshext-golang.so (Options.Plugin path or xdsfilter.DefaultGolangLibrary).
	FlavorContrib = "contrib"
)

// Plugin switch values (Options.Plugin). Any other value is a path to the
// contrib library, which implies PluginOn.
const (
	// PluginOn renders the meshext Go filter on HTTP MES listeners.
	PluginOn = "on"
	// PluginOff renders native Envoy HTTP RBAC instead (no Go in Envoy).
	PluginOff = "off"
)

// DefaultNodeService is the source kuma.io/service of the default node (no
// Dataplanes): its listeners have no owning workload, so policies can name
// this source with from MeshService "meshext-default-node", and from Mesh
// rules and the mesh default apply as to any other source. The source mesh is
// the destination's own mesh.
const DefaultNodeService = "meshext-default-node"

// HTTPProxyListenerName is the forward-proxy listener (Options.HTTPProxyListen).
const HTTPProxyListenerName = "outbound:http-proxy"

// pluginOn reports whether HTTP listeners get the Go filter.
func (o *Options) pluginOn() bool { return o.Plugin != "" && o.Plugin != PluginOff }

// golangLibrary is the contrib library path ("" = xdsfilter's default).
func (o *Options) golangLibrary() string {
	if o.Plugin == PluginOn || o.Plugin == PluginOff {
		return ""
	}
	return o.Plugin
}

// SourceIdentity is the traffic source a Dataplane's listeners stand for: its
// mesh, the kuma.io/service tag of networking.inbound[0] (else the Dataplane's
// name) and that inbound's tags. dp nil (the default node) gives
// DefaultNodeService in mesh.
func SourceIdentity(dp *resource.Dataplane, mesh string) core.Identity {
	if dp == nil {
		return core.Identity{Mesh: mesh, Service: DefaultNodeService}
	}
	id := core.Identity{Mesh: dp.Mesh, Service: dp.Name}
	if len(dp.Networking.Inbound) > 0 {
		tags := dp.Networking.Inbound[0].Tags
		if s := tags[core.ServiceTag]; s != "" {
			id.Service = s
		}
		for k, v := range tags {
			if k == core.ServiceTag {
				continue
			}
			if id.Tags == nil {
				id.Tags = map[string]string{}
			}
			id.Tags[k] = v
		}
	}
	return id
}

// AuthzConfig is the decision input for traffic from src to services on
// the proxy of node (a Dataplane's or ZoneEgress's resource; nil for the
// default node): the services (cluster = ClusterName, generated hostnames,
// VIP, match port, SNI), the meshes' defaultForbidMeshExternalServiceAccess,
// and the valid MeshTrafficPermissions that can decide for them: mesh-wide
// ones, those targeting one of the services, and those whose
// {kind: Dataplane} targetRef selects node (as if mesh-wide), in from[] or
// rules[] form. A policy's MeshExternalService targetRef may use the display
// name (Kubernetes-style resources); it is translated to the service's name.
func AuthzConfig(w *model.World, node *resource.Meta, src core.Identity, services []*model.Service) core.Config {
	cfg := core.Config{Source: src, Services: make([]core.Service, 0, len(services))}
	meshes := map[string]bool{}
	listed := map[[2]string]bool{}
	byDisplay := map[[2]string]string{}
	for _, s := range services {
		cfg.Services = append(cfg.Services, coreService(s))
		meshes[s.Mesh] = true
		listed[[2]string{s.Mesh, s.Name}] = true
		if s.Resource != nil {
			if dn := s.Resource.DisplayName(); dn != "" && dn != s.Name {
				if _, taken := byDisplay[[2]string{s.Mesh, dn}]; !taken {
					byDisplay[[2]string{s.Mesh, dn}] = s.Name
				}
			}
		}
	}
	names := make([]string, 0, len(meshes))
	for m := range meshes {
		names = append(names, m)
	}
	sort.Strings(names)
	for _, m := range names {
		cfg.Meshes = append(cfg.Meshes, core.Mesh{Name: m, DefaultForbidMeshExternalServiceAccess: w.Meshes[m].ForbidsMeshExternalServiceAccess()})
	}
	for _, p := range w.Permissions {
		if !meshes[p.Mesh] {
			continue
		}
		cp := core.Policy{Name: p.Name, Mesh: p.Mesh, TargetRef: core.TargetRef{Kind: core.KindMesh}}
		if t := p.Spec.TargetRef; t != nil && t.Kind == resource.RefDataplane {
			if !selectsProxy(t, node) {
				continue // about other proxies
			}
		} else if t != nil && t.Kind != resource.RefMesh {
			cp.TargetRef = core.TargetRef{Kind: t.Kind, Name: t.Name}
			// A service's own name wins over another's display name (as
			// for Dataplane outbounds, byRefName): a label must not
			// redirect a policy written for a service by name.
			if n, ok := byDisplay[[2]string{p.Mesh, t.Name}]; ok && !listed[[2]string{p.Mesh, t.Name}] {
				cp.TargetRef.Name = n
			}
			if !listed[[2]string{p.Mesh, cp.TargetRef.Name}] {
				continue // about a service not reachable here
			}
		}
		for _, f := range p.Spec.From {
			cp.From = append(cp.From, core.From{
				TargetRef: core.TargetRef{Kind: f.TargetRef.Kind, Name: f.TargetRef.Name, Tags: f.TargetRef.Tags},
				Default:   core.Conf{Action: core.Action(f.Default.Action)},
			})
		}
		cp.Rules = coreRules(p.Spec.Rules)
		cfg.Policies = append(cfg.Policies, cp)
	}
	return cfg
}

// selectsProxy reports whether a {kind: Dataplane} targetRef takes in the
// proxy of node (nil: the default node, which no such ref names).
func selectsProxy(t *resource.TargetRef, node *resource.Meta) bool {
	return node != nil && node.SelectedByProxyRef(t.Name, t.Namespace, t.Labels)
}

// coreRules is rules[] in the filter's terms.
func coreRules(rules []resource.TrafficPermRule) []core.Rule {
	if len(rules) == 0 {
		return nil
	}
	matches := func(in []resource.TrafficPermMatch) []core.Match {
		var out []core.Match
		for _, m := range in {
			var cm core.Match
			if m.SpiffeID != nil {
				cm.SpiffeID = &core.StringMatch{Type: m.SpiffeID.Type, Value: m.SpiffeID.Value}
			}
			if m.SNI != nil {
				cm.SNI = &core.StringMatch{Type: m.SNI.Type, Value: m.SNI.Value}
			}
			out = append(out, cm)
		}
		return out
	}
	out := make([]core.Rule, len(rules))
	for i, r := range rules {
		out[i] = core.Rule{Default: core.RuleConf{
			Deny: matches(r.Default.Deny), AllowWithShadowDeny: matches(r.Default.AllowWithShadowDeny), Allow: matches(r.Default.Allow),
		}}
	}
	return out
}

func coreService(s *model.Service) core.Service {
	cs := core.Service{
		Name: s.Name, Mesh: s.Mesh, Cluster: s.ClusterName(), Protocol: s.Protocol,
		Hostnames: append([]string(nil), s.Hostnames...), Port: s.Port, SNI: s.SNI,
	}
	if cs.Protocol == "" {
		cs.Protocol = resource.ProtocolTCP
	}
	if s.VIP.IsValid() {
		cs.VIP = s.VIP.String()
	}
	return cs
}

// isHTTP reports whether s is served by an HTTP connection manager.
func isHTTP(s *model.Service) bool {
	switch s.Protocol {
	case resource.ProtocolHTTP, resource.ProtocolHTTP2, resource.ProtocolGRPC:
		return true
	}
	return false
}

// authzFilters is THE place where egress authorization (MeshTrafficPermission,
// Mesh.routing.defaultForbidMeshExternalServiceAccess; see plugin/core) enters
// the rendered config, for traffic from node n to service s, on listeners
// dedicated to s (its outbound listener and its transparent filter chain).
// The decision input is AuthzConfig with s as the only (and default) service
// and the node's Dataplane as source (SourceIdentity).
//
// There the caller (the node) and the destination (s) are both fixed, so the
// decision is known now (static): nothing depends on the request.
//
//   - Allow: no authorization filter at all.
//   - Deny: no filter either; the returned staticDecision says so, and
//     serviceFilters answers every request with a direct 403 (gRPC status
//     7) naming the policy (staticDenyRoute), or sends a tcp service's
//     connections to DeniedCluster (closed without reaching s).
//   - AllowWithShadowDeny: the request passes, but the shadow denial must
//     stay observable as before (the filter's metadata, counter and log, or
//     RBAC's shadow stats), so the per-request filter is kept: network RBAC
//     (plugin/rbac, by listener owner) for tcp; for HTTP the meshext Go
//     filter (plugin/xdsfilter, table key "meshext:<cluster>") with the
//     plugin on, native HTTP RBAC with PluginOff.
//
// An error skips s on this node only.
func (r *renderer) authzFilters(n *Node, s *model.Service) (network []*listenerv3.Filter, http []*hcmv3.HttpFilter, st staticDecision, err error) {
	src := SourceIdentity(n.Dataplane, s.Mesh)
	cfg := AuthzConfig(r.world, nodeMeta(n), src, []*model.Service{s})
	cfg.DefaultService = s.Name
	t, err := core.Compile(&cfg)
	if err != nil {
		return nil, nil, st, err
	}
	e := t.Default()
	d := e.Decide()
	st = staticDecision{decision: d, entry: e, source: src.Service}
	if d.Action != core.AllowWithShadowDeny {
		return nil, nil, st, nil
	}
	if !isHTTP(s) {
		f, err := networkFilter(rbac.NetworkFilterName, rbac.Network(e, rbac.ByListenerOwner, s.ClusterName()))
		if err != nil {
			return nil, nil, st, err
		}
		return []*listenerv3.Filter{f}, nil, st, nil
	}
	if !r.opts.pluginOn() {
		// By listener owner the rules depend only on the decision: pack each once.
		v, err := r.shared.get("rbac-http:"+string(d.Action)+":"+d.Reason.String()+":"+d.Policy, func() (any, error) {
			return pack(rbac.HTTP(e, rbac.ByListenerOwner))
		})
		if err != nil {
			return nil, nil, st, err
		}
		a := v.(*anypb.Any)
		return nil, []*hcmv3.HttpFilter{{Name: rbac.HTTPFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}}, st, nil
	}
	f, err := r.meshextFilter(&egress.FilterConfig{
		Config:                   cfg,
		IgnoreClientCertificates: true, // plaintext listener: the source is its owner
		FixedCluster:             true, // the listener's route names this service's cluster
		TableKey:                 "meshext:" + s.ClusterName(),
	})
	if err != nil {
		return nil, nil, st, err
	}
	return nil, []*hcmv3.HttpFilter{f}, st, nil
}

// meshextFilter is the Go filter for the configured flavor. Decision
// metadata goes on denials and shadow denials only: an allowed request is
// attributed by its upstream cluster in the access log, and each metadata
// key is a call into Envoy per request.
func (r *renderer) meshextFilter(cfg *egress.FilterConfig) (*hcmv3.HttpFilter, error) {
	cfg.DenyMetadataOnly = true
	if r.opts.Flavor == FlavorContrib {
		return xdsfilter.Golang(cfg, r.opts.golangLibrary())
	}
	return xdsfilter.DynamicModule(cfg)
}

// checkAuthz validates the authorization options.
func (o *Options) checkAuthz() error {
	switch o.Flavor {
	case "", FlavorStock, FlavorContrib:
	default:
		return fmt.Errorf("envoy flavor %q: want %q or %q", o.Flavor, FlavorStock, FlavorContrib)
	}
	if p := o.golangLibrary(); p != "" && o.Flavor != FlavorContrib {
		return fmt.Errorf("plugin %q: a library path is for the contrib flavor; stock Envoy finds libmeshext.so through ENVOY_DYNAMIC_MODULES_SEARCH_PATH (use %q)", p, PluginOn)
	}
	return nil
}

// nodeMeta is the resource a workload node stands for (nil: default node).
func nodeMeta(n *Node) *resource.Meta {
	if n.Dataplane == nil {
		return nil
	}
	return &n.Dataplane.Meta
}

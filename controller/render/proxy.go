package render

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
	"github.com/meshext/meshext/plugin/rbac"
)

// httpProxy is the HTTP forward-proxy listener (Options.HTTPProxyListen):
// clients with http_proxy set reach any HTTP MES of the node by its generated
// hostname or VIP. Host matching and authorization are the meshext filter's
// (no defaultService: an unknown host is a 404), and one cluster_header route
// sends the request to the cluster it picked. With PluginOff the same is
// rendered natively (rbac.VirtualHosts: one virtual host per MES with its
// RBAC, a 404 catch-all).
//
// The default node serves one mesh here (a filter has one source): "default"
// if it has HTTP services, else the first mesh by name; the others are left
// out with a warning.
func (r *renderer) httpProxy(n *Node, ready []*rendered) (*listenerv3.Listener, []string, error) {
	ap, err := netip.ParseAddrPort(r.opts.HTTPProxyListen)
	if err != nil {
		return nil, nil, fmt.Errorf("http proxy listen %q: want IP:PORT: %v", r.opts.HTTPProxyListen, err)
	}
	var warnings []string
	var services []*model.Service
	for _, rs := range ready {
		if isHTTP(rs.svc) {
			services = append(services, rs.svc)
		}
	}
	mesh := ""
	if n.Dataplane != nil {
		mesh = n.Dataplane.Mesh
	} else if len(services) > 0 {
		mesh = services[0].Mesh
		for _, s := range services {
			if s.Mesh == "default" {
				mesh = "default"
			}
		}
	}
	mine := services[:0:0]
	for _, s := range services {
		if s.Mesh != mesh {
			warnings = append(warnings, fmt.Sprintf("%s/%s: not on the HTTP proxy listener (the default node's proxy serves mesh %q)", s.Mesh, s.Name, mesh))
			continue
		}
		mine = append(mine, s)
	}
	if mesh == "" {
		mesh = "default" // no HTTP services: every host is unknown
	}
	cfg := AuthzConfig(r.world, nodeMeta(n), SourceIdentity(n.Dataplane, mesh), mine)
	if r.world.MTLS[mesh] != nil {
		// The mesh's ZoneEgresses authorize its traffic (egress.go): the
		// proxy only routes.
		cfg.Meshes, cfg.Policies = nil, nil
	}
	t, err := core.Compile(&cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("http proxy listener: %w", err)
	}

	var filters []*hcmv3.HttpFilter
	var vhosts []*routev3.VirtualHost
	if r.opts.pluginOn() {
		f, err := r.meshextFilter(&egress.FilterConfig{Config: cfg, IgnoreClientCertificates: true, TableKey: HTTPProxyListenerName})
		if err != nil {
			return nil, nil, fmt.Errorf("http proxy listener: %w", err)
		}
		filters = append(filters, f)
		vhosts = []*routev3.VirtualHost{{
			Name:    "meshext:http-proxy",
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: rewriteFor(&routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_ClusterHeader{ClusterHeader: egress.DefaultClusterHeader},
				}, mine...)},
				RequestHeadersToRemove: []string{egress.DefaultClusterHeader},
			}},
		}}
	} else {
		f, err := rbac.HTTPFilter()
		if err != nil {
			return nil, nil, err
		}
		filters = append(filters, f)
		if vhosts, err = rbac.VirtualHosts(t, rbac.ByListenerOwner); err != nil {
			return nil, nil, fmt.Errorf("http proxy listener: %w", err)
		}
		byCluster := make(map[string]*model.Service, len(mine))
		for _, s := range mine {
			byCluster[s.ClusterName()] = s
		}
		for _, vh := range vhosts {
			for _, rt := range vh.Routes {
				if a := rt.GetRoute(); a != nil {
					autoHostRewrite(a, byCluster[a.GetCluster()])
				}
			}
		}
	}
	if r.world.MTLS[mesh] != nil {
		// Every cluster here goes to the zone's egresses (egress.go),
		// whose routes set the Host.
		for _, vh := range vhosts {
			for _, rt := range vh.Routes {
				if a := rt.GetRoute(); a != nil {
					a.HostRewriteSpecifier = nil
					a.RetryPolicy = egressRetryPolicy()
				}
			}
		}
	}
	router, err := r.shared.get("router", func() (any, error) { return pack(&routerv3.Router{}) })
	if err != nil {
		return nil, nil, err
	}
	logs, err := r.proxyAccessLogs(n, mine)
	if err != nil {
		return nil, nil, err
	}
	filters = append(filters, &hcmv3.HttpFilter{
		Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router.(*anypb.Any)},
	})
	hcm, err := networkFilter("envoy.filters.network.http_connection_manager", &hcmv3.HttpConnectionManager{
		CodecType:            hcmv3.HttpConnectionManager_AUTO,
		StatPrefix:           "http_proxy",
		StripTrailingHostDot: true,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "meshext:http-proxy", VirtualHosts: vhosts, ValidateClusters: noClusterValidation(),
		}},
		HttpFilters:       filters,
		AccessLog:         logs,
		GenerateRequestId: generateRequestID(logs),
	})
	if err != nil {
		return nil, nil, err
	}
	addr := ap.Addr().Unmap().String()
	l := &listenerv3.Listener{
		Name:             HTTPProxyListenerName,
		Address:          socketAddress(addr, uint32(ap.Port())),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		StatPrefix:       "http_proxy_" + net.JoinHostPort(addr, strconv.Itoa(int(ap.Port()))),
		FilterChains:     []*listenerv3.FilterChain{{Name: "http_proxy", Filters: []*listenerv3.Filter{hcm}}},
	}
	if err := validate(l); err != nil {
		return nil, nil, err
	}
	return l, warnings, nil
}

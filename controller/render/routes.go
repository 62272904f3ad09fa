package render

import (
	"fmt"
	"path/filepath"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
)

// How a workload's service listeners get their route tables (Options.RoutesVia).
const (
	// RoutesInline: inside the listener (meshext render's static files).
	RoutesInline = "inline"
	// RoutesADS: RDS over the ADS stream (meshext run --xds ads).
	RoutesADS = "ads"
	// RoutesFile: RDS from one DiscoveryResponse file per route table,
	// xds.RoutePath(Options.RoutesDir, node, name).
	RoutesFile = "file"
)

// checkRoutes validates the route delivery options.
func (o *Options) checkRoutes() error {
	switch o.RoutesVia {
	case "", RoutesInline, RoutesADS:
	case RoutesFile:
		if o.RoutesDir == "" || !filepath.IsAbs(o.RoutesDir) {
			return fmt.Errorf("routes via file needs an absolute xds directory, got %q", o.RoutesDir)
		}
	default:
		return fmt.Errorf("routes via %q: want %q, %q or %q", o.RoutesVia, RoutesInline, RoutesADS, RoutesFile)
	}
	return nil
}

// setRoutes places a service's route table: inline, or (RoutesADS,
// RoutesFile) in n.Routes with the HCM naming it through RDS. Through RDS
// a change of the table (a permission revoked or granted: the decision is
// in the routes, see staticDenyRoute) applies to the next request of every
// open connection, where a listener change only reaches new connections
// (Envoy drains the old ones over --drain-time-s). The egress keeps its
// tables inline: its decisions are per request, in its filter.
func (r *renderer) setRoutes(n *Node, hcm *hcmv3.HttpConnectionManager, rc *routev3.RouteConfiguration, h hop) error {
	var src *corev3.ConfigSource
	switch r.opts.RoutesVia {
	case RoutesADS:
		src = &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}
	case RoutesFile:
		// One file per table: a path subscription takes exactly one
		// RouteConfiguration. No watched_directory: Envoy then reloads a
		// table only when its own file is renamed into place (the
		// writer's atomic replace), not every table on any change.
		src = &corev3.ConfigSource{
			ResourceApiVersion: corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
				Path: r.opts.FileFormat.RoutePath(r.opts.RoutesDir, n.ID, rc.Name),
			}},
		}
	}
	if src == nil || h.atEgress {
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
		return nil
	}
	if err := validate(rc); err != nil {
		return err
	}
	n.Routes = append(n.Routes, rc)
	hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: src, RouteConfigName: rc.Name}}
	return nil
}

// inlineRoutes returns ls with every RDS reference to one of routes
// replaced by the table itself (copies; ls is not changed), for a fully
// static bootstrap.
func inlineRoutes(ls []*listenerv3.Listener, routes []*routev3.RouteConfiguration) ([]*listenerv3.Listener, error) {
	if len(routes) == 0 {
		return ls, nil
	}
	byName := make(map[string]*routev3.RouteConfiguration, len(routes))
	for _, rc := range routes {
		byName[rc.Name] = rc
	}
	out := make([]*listenerv3.Listener, len(ls))
	for i, l := range ls {
		l = proto.Clone(l).(*listenerv3.Listener)
		chains := l.FilterChains
		if l.DefaultFilterChain != nil {
			chains = append(chains[:len(chains):len(chains)], l.DefaultFilterChain)
		}
		for _, fc := range chains {
			for _, f := range fc.Filters {
				if f.GetTypedConfig().MessageIs(&hcmv3.HttpConnectionManager{}) {
					hcm := &hcmv3.HttpConnectionManager{}
					if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
						return nil, err
					}
					rc := byName[hcm.GetRds().GetRouteConfigName()]
					if rc == nil {
						continue
					}
					hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
					a, err := pack(hcm)
					if err != nil {
						return nil, err
					}
					f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
				}
			}
		}
		out[i] = l
	}
	return out, nil
}

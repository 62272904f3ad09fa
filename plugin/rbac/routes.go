package rbac

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshext/meshext/plugin/core"
)

// NotFoundBody is the 404 body for an unknown host without the Go filter.
const NotFoundBody = "meshext: no MeshExternalService matches this host\n"

// HTTPFilter is the HCM entry for --plugin=off: an RBAC filter with no
// rules of its own, so each MES virtual host's per-route RBAC applies.
// Place it before the router.
func HTTPFilter() (*hcmv3.HttpFilter, error) {
	a, err := anypb.New(&httprbacv3.RBAC{})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: HTTPFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}, nil
}

// VirtualHosts renders the host matching and authorization the Go filter
// does as native routes, for an HTTP listener without the plugin: one
// virtual host per HTTP/gRPC MES (domains = its names and VIPs, with and
// without port; route "/" to its cluster; its RBAC per route) and a
// catch-all that answers 404, or goes to the DefaultService. TCP MES are
// skipped (use Network). Set strip_trailing_host_dot on the HCM so
// "name." matches too; Envoy matches domains case-insensitively.
func VirtualHosts(t *core.Table, mode Mode) ([]*routev3.VirtualHost, error) {
	var vhosts []*routev3.VirtualHost
	for _, e := range t.Entries() {
		if e.Service.Protocol == "tcp" || len(e.Hosts()) == 0 {
			continue
		}
		vh, err := virtualHost(e, mode, fmt.Sprintf("meshext:%s/%s", e.Service.Mesh, e.Service.Name), e.Hosts())
		if err != nil {
			return nil, err
		}
		vhosts = append(vhosts, vh)
	}
	if d := t.Default(); d != nil && d.Service.Protocol != "tcp" {
		vh, err := virtualHost(d, mode, "meshext:default", []string{"*"})
		if err != nil {
			return nil, err
		}
		return append(vhosts, vh), nil
	}
	return append(vhosts, &routev3.VirtualHost{
		Name:    "meshext:unknown-host",
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
				Status: 404,
				Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: NotFoundBody}},
			}},
		}},
	}), nil
}

func virtualHost(e *core.Entry, mode Mode, name string, domains []string) (*routev3.VirtualHost, error) {
	perRoute, err := anypb.New(HTTPPerRoute(e, mode))
	if err != nil {
		return nil, err
	}
	vh := &routev3.VirtualHost{
		Name:    name,
		Domains: append([]string(nil), domains...),
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: e.Service.Cluster}}},
		}},
		TypedPerFilterConfig: map[string]*anypb.Any{HTTPFilterName: perRoute},
	}
	if err := vh.ValidateAll(); err != nil {
		return nil, fmt.Errorf("virtual host %s: %w", name, err)
	}
	return vh, nil
}

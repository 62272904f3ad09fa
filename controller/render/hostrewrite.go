package render

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/model"
)

// Host rewrite. Kuma sets auto_host_rewrite on every route to a
// MeshExternalService, so a DNS endpoint (httpbin.org) gets its own name as
// Host whatever the application sent (a VIP, a generated hostname,
// 127.0.0.1:PORT). Envoy rewrites only to a host's hostname, which only a
// DNS-name endpoint has: on a route whose clusters hold IP or unix
// endpoints only (or the egress clusters a workload uses in an mTLS mesh)
// the option changes nothing, and meshext leaves it out there.

// namesHost reports whether s has an endpoint given by a DNS name, the only
// kind auto_host_rewrite rewrites to.
func namesHost(s *model.Service) bool {
	for _, ep := range s.Endpoints {
		if !ep.Unix && !ep.IsIP && !hostIsIP(ep.Address) {
			return true
		}
	}
	return false
}

// autoHostRewrite sets auto_host_rewrite on a when one of the services its
// clusters lead to has a DNS-name endpoint, and clears it otherwise.
func autoHostRewrite(a *routev3.RouteAction, services ...*model.Service) {
	a.HostRewriteSpecifier = nil
	for _, s := range services {
		if s != nil && namesHost(s) {
			a.HostRewriteSpecifier = &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)}
			return
		}
	}
}

// rewriteFor is a with autoHostRewrite for the services it may lead to.
func rewriteFor(a *routev3.RouteAction, services ...*model.Service) *routev3.RouteAction {
	autoHostRewrite(a, services...)
	return a
}

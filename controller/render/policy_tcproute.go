package render

import (
	"cmp"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
)

// serviceTCPProxy is the tcp_proxy of a tcp service on node n (hop h): to
// upstream (s's cluster, or DeniedCluster when closed), or, with a
// MeshTCPRoute, to its weighted backends; then MeshTimeout's idle timeout,
// MeshRetry's connect attempts (with the egress failover's on the way to an
// egress) and MeshAccessLog. At an egress only the idle timeout and the
// access log apply (For fills no route or retry there). denied reports
// that every backend of the route is one the node may not reach (the chain
// then goes to DeniedCluster too).
func (r *renderer) serviceTCPProxy(n *Node, s *model.Service, upstream string, closed bool, h hop) (_ *listenerv3.Filter, denied bool, err error) {
	eff := r.policiesFor(n, s)
	tp := &tcpproxyv3.TcpProxy{StatPrefix: s.ClusterName(), ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: upstream}}
	if route := confOf[resource.TCPRouteConf](eff, resource.KindMeshTCPRoute); route != nil && !closed {
		bes := r.backends(n, s, fieldOrigin(eff.Confs[resource.KindMeshTCPRoute], "backendRefs"), route.BackendRefs)
		var weighted []*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight
		for _, b := range bes {
			if b.denied != "" {
				r.note(n, "%s/%s: MeshTCPRoute backend %s/%s left out: this node may not reach it", s.Mesh, s.Name, b.svc.Mesh, b.svc.Name)
				continue
			}
			if b.weight == 0 {
				continue
			}
			weighted = append(weighted, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: b.svc.ClusterName(), Weight: b.weight})
		}
		switch len(weighted) {
		case 0:
			tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: DeniedCluster}
			denied = true
			r.note(n, "%s/%s: MeshTCPRoute leaves no backend this node may reach: connections are closed", s.Mesh, s.Name)
		case 1:
			tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: weighted[0].Name}
		default:
			tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{Clusters: weighted}}
		}
	}
	if t := confOf[resource.MeshTimeoutConf](eff, resource.KindMeshTimeout); t != nil {
		tcpProxyTimeouts(t, tp)
	}
	if rt := confOf[resource.MeshRetryConf](eff, resource.KindMeshRetry); rt != nil {
		tcpProxyRetry(rt, tp)
	}
	if h.viaEgress {
		egressConnects(tp)
	}
	if tp.AccessLog, err = r.tcpAccessLogs(n, s, eff); err != nil {
		return nil, false, err
	}
	f, err := networkFilter("envoy.filters.network.tcp_proxy", tp)
	return f, denied, err
}

// backend is one weighted destination of a route.
type backend struct {
	svc    *model.Service
	weight uint32
	// denied is the 403 body when node's source may not reach svc.
	denied string
}

// backends resolves a route's backendRefs (set by the policy at o) to the
// services on the node. A ref that names no service on the node is left
// out with a warning; nil refs mean s itself. A backend other than s is
// checked against the node's authorization for it.
func (r *renderer) backends(n *Node, s *model.Service, o policy.Origin, refs *[]resource.PolicyBackendRef) []backend {
	if refs == nil {
		return []backend{{svc: s, weight: 1}}
	}
	var byResource []*resource.MeshExternalService
	svcOf := map[*resource.MeshExternalService]*model.Service{}
	for _, rs := range r.onNode {
		if rs.svc.Resource != nil {
			byResource = append(byResource, rs.svc.Resource)
			svcOf[rs.svc.Resource] = rs.svc
		}
	}
	p := r.world.Policies.Policy(o)
	var out []backend
	for i, ref := range *refs {
		mes := policy.BackendService(p, ref, byResource)
		if mes == nil {
			r.note(n, "%s/%s: %s %s: backendRefs[%d] (%s) names no MeshExternalService rendered on this node (left out)",
				s.Mesh, s.Name, o.Kind, o.Name, i, cmp.Or(ref.Name, "by labels"))
			continue
		}
		b := backend{svc: svcOf[mes], weight: ref.EffectiveWeight()}
		if b.svc != s {
			if reach := r.reaches(n, b.svc); !reach.allowed {
				b.denied = reach.body
			}
		}
		out = append(out, b)
	}
	return out
}

// fieldOrigin is the policy that set a conf's field (the conf's last
// origin when the field is not listed).
func fieldOrigin(c *policy.Conf, path string) policy.Origin {
	for _, f := range c.Fields {
		if f.Path == path {
			return f.Origin
		}
	}
	if len(c.Origins) > 0 {
		return c.Origins[len(c.Origins)-1]
	}
	return policy.Origin{}
}

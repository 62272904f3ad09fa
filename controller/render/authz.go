package render

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/meshext/meshext/controller/model"
)

// authzFilters is THE place where egress authorization (MeshTrafficPermission,
// Mesh.routing.defaultForbidMeshExternalServiceAccess; see plugin/core) enters
// the rendered config, for traffic from node n to service s.
//
//   - network filters are inserted before tcp_proxy (tcp services) or before the
//     HTTP connection manager (http/http2/grpc), in both the outbound listener and
//     the transparent listener's filter chain of s;
//   - http filters are inserted before the router inside the HCM.
//
// n.Dataplane is the source (nil on the default node); r.world has the
// permissions and meshes. Each returned message must already be validated
// and packed (use pack). An error skips s on this node only.
//
// It returns nothing for now: every service is reachable.
func (r *renderer) authzFilters(n *Node, s *model.Service) (network []*listenerv3.Filter, http []*hcmv3.HttpFilter, err error) {
	return nil, nil, nil
}

package policy

import "github.com/meshext/meshext/controller/resource"

// selectsService is Kuma's resolve.TargetRef for a to[] item aimed at a
// MeshExternalService: by name (its identity in the policy's mesh, zone and
// namespace, see targetIdentity) or by labels (all present, same values).
func (r *Resolver) selectsService(e entry, mes *resource.MeshExternalService) bool {
	if e.ref.Kind != resource.RefMeshExternalService || mes.Mesh != e.policy.GetMeta().Mesh {
		return false
	}
	return refMatches(e, &mes.Meta)
}

// selectsRoute is the same for a to[] item aimed at a MeshHTTPRoute.
func (r *Resolver) selectsRoute(e entry, route *resource.MeshHTTPRoute) bool {
	if e.ref.Kind != resource.RefMeshHTTPRoute || route.Mesh != e.policy.GetMeta().Mesh {
		return false
	}
	return refMatches(e, &route.Meta)
}

func refMatches(e entry, target *resource.Meta) bool {
	if len(e.ref.Labels) > 0 {
		return subset(e.ref.Labels, target.Labels)
	}
	return e.ref.Name != "" && identityOf(target, e.ref.Kind) == targetIdentity(e.policy.GetMeta(), e.ref)
}

package policy

import (
	"github.com/meshext/meshext/controller/resource"
)

// Policy returns the policy an Origin names (nil when unknown).
func (r *Resolver) Policy(o Origin) resource.Policy {
	if r == nil {
		return nil
	}
	for _, p := range r.policies {
		if m := p.GetMeta(); m.Kind == o.Kind && m.Mesh == o.Mesh && m.Name == o.Name {
			return p
		}
	}
	return nil
}

// BackendService resolves a MeshHTTPRoute or MeshTCPRoute backendRef of
// policy p to one of services, as Kuma's resolve.BackendRef does: a name
// in p's mesh, zone and namespace (or ref.namespace), or labels, of which
// the oldest matching service wins (then the first in services' order).
// It returns nil for other kinds and for a ref that names nothing.
func BackendService(p resource.Policy, ref resource.PolicyBackendRef, services []*resource.MeshExternalService) *resource.MeshExternalService {
	if p == nil || ref.Kind != resource.RefMeshExternalService {
		return nil
	}
	pm := p.GetMeta()
	target := ref.TargetRef()
	var best *resource.MeshExternalService
	for _, s := range services {
		if s.Mesh != pm.Mesh {
			continue
		}
		if len(ref.Labels) > 0 {
			if subset(ref.Labels, s.Labels) && (best == nil || older(&s.Meta, &best.Meta)) {
				best = s
			}
			continue
		}
		if identityOf(&s.Meta, resource.RefMeshExternalService) == targetIdentity(pm, target) {
			return s
		}
	}
	return best
}

// older: an earlier creation time; a resource without one is never older.
func older(a, b *resource.Meta) bool {
	return a.CreationTime != "" && (b.CreationTime == "" || a.CreationTime < b.CreationTime)
}

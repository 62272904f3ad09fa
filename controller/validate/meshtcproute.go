package validate

import (
	"fmt"

	"github.com/meshext/meshext/controller/resource"
)

// meshTCPRoute applies Kuma v2.14's MeshTCPRoute validator in its order,
// with its schema's limit of one rule per to[] item, then meshext's
// refusal of destinations that are not MeshExternalServices.
func meshTCPRoute(v *violations, r *resource.MeshTCPRoute) {
	s := &r.Spec
	top := topRef(v, s.TargetRef, roleOpts(policyRole(v, r), topKindsGateway))
	for i := range s.To {
		at := fmt.Sprintf("spec.to[%d]", i)
		to := &s.To[i]
		toRef(v, at, &to.TargetRef, toKindsUnder(top, toKindsRoutes, []string{resource.RefMesh}, resource.RefMeshGateway))
		for j := range to.Rules {
			bat := fmt.Sprintf("%s.rules[%d].default.backendRefs", at, j)
			refs := to.Rules[j].Default.BackendRefs
			if refs == nil || len(*refs) == 0 {
				v.add(bat, msgMustBeDefined)
			} else {
				backendRefs(v, bat, *refs)
			}
		}
		if len(to.Rules) > 1 { // Kuma's schema: maxItems 1
			v.add(at+".rules", "must have at most 1 item")
		}
	}
}

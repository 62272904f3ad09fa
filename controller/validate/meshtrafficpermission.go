package validate

import (
	"fmt"
	"slices"

	"github.com/meshext/meshext/controller/resource"
)

var actions = []string{resource.ActionAllow, resource.ActionDeny, resource.ActionAllowWithShadowDeny}

// meshTrafficPermission checks the egress form meshext reads: the top-level
// targetRef picks the mesh or one MeshExternalService (absent = the mesh, as
// in Kuma); from[] names the sources and an action. Messages follow Kuma's
// targetRef validator ("value is not supported", "must be set with kind X").
func meshTrafficPermission(v *violations, r *resource.MeshTrafficPermission) {
	if ref := r.Spec.TargetRef; ref != nil {
		const at = "spec.targetRef"
		switch ref.Kind {
		case resource.RefMesh:
			forbidName(v, at, ref)
			forbidTags(v, at, ref)
		case resource.RefMeshExternalService:
			requireName(v, at, ref)
			forbidTags(v, at, ref)
		case "":
			v.add(at+".kind", "must be defined")
		default:
			v.add(at+".kind", "value is not supported")
		}
	}

	if len(r.Spec.From) == 0 {
		v.add("spec.from", "must have at least one element")
	}
	for i, from := range r.Spec.From {
		at := fmt.Sprintf("spec.from[%d]", i)
		ref := &from.TargetRef
		refAt := at + ".targetRef"
		switch ref.Kind {
		case resource.RefMesh:
			forbidName(v, refAt, ref)
			forbidTags(v, refAt, ref)
		case resource.RefMeshService:
			requireName(v, refAt, ref)
			forbidTags(v, refAt, ref)
		case resource.RefMeshSubset:
			forbidName(v, refAt, ref)
			requireTags(v, refAt, ref)
		case resource.RefMeshServiceSubset:
			requireName(v, refAt, ref)
			requireTags(v, refAt, ref)
		case "":
			v.add(refAt+".kind", "must be defined")
		default:
			v.add(refAt+".kind", "value is not supported")
		}
		switch action := from.Default.Action; {
		case action == "":
			v.add(at+".default.action", "must be defined")
		case !slices.Contains(actions, action):
			v.add(at+".default.action", "%s", mustBeOneOf("action", actions...))
		}
	}
}

func requireName(v *violations, at string, ref *resource.TargetRef) {
	if ref.Name == "" {
		v.add(at+".name", "must be set with kind %s", ref.Kind)
	}
}

func forbidName(v *violations, at string, ref *resource.TargetRef) {
	if ref.Name != "" {
		v.add(at+".name", "cannot be set with kind %s", ref.Kind)
	}
}

func requireTags(v *violations, at string, ref *resource.TargetRef) {
	if len(ref.Tags) == 0 {
		v.add(at+".tags", "must be set with kind %s", ref.Kind)
	}
}

func forbidTags(v *violations, at string, ref *resource.TargetRef) {
	if len(ref.Tags) > 0 {
		v.add(at+".tags", "cannot be set with kind %s", ref.Kind)
	}
}

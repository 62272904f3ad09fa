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
//
// Kuma 2.12's rules form is checked by meshTrafficPermissionRules; a policy
// has from or rules, never both. A top-level {kind: Dataplane} (name, or
// labels) selects the ZoneEgresses and Dataplanes whose listeners enforce it.
func meshTrafficPermission(v *violations, r *resource.MeshTrafficPermission) {
	if ref := r.Spec.TargetRef; ref != nil {
		const at = "spec.targetRef"
		switch ref.Kind {
		case resource.RefMesh:
			forbidName(v, at, ref)
			forbidTags(v, at, ref)
			forbidSelectors(v, at, ref)
		case resource.RefMeshExternalService:
			requireName(v, at, ref)
			forbidTags(v, at, ref)
			forbidSelectors(v, at, ref)
		case resource.RefDataplane:
			forbidTags(v, at, ref)
			if len(ref.Labels) > 0 && (ref.Name != "" || ref.Namespace != "") {
				v.add(at+".labels", "either labels or name and namespace must be specified")
			}
		case "":
			v.add(at+".kind", "must be defined")
		default:
			v.add(at+".kind", "value is not supported")
		}
	}

	switch {
	case len(r.Spec.From) > 0 && len(r.Spec.Rules) > 0:
		v.add("spec", "field 'from' must be empty when 'rules' is defined")
	case len(r.Spec.From) == 0 && len(r.Spec.Rules) == 0:
		v.add("spec", "at least one of 'from' or 'rules' has to be defined")
	}
	meshTrafficPermissionRules(v, r.Spec.Rules)
	for i, from := range r.Spec.From {
		at := fmt.Sprintf("spec.from[%d]", i)
		ref := &from.TargetRef
		refAt := at + ".targetRef"
		forbidSelectors(v, refAt, ref)
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

// forbidSelectors refuses the Dataplane-only fields on other kinds.
func forbidSelectors(v *violations, at string, ref *resource.TargetRef) {
	if len(ref.Labels) > 0 {
		v.add(at+".labels", "cannot be set with kind %s", ref.Kind)
	}
	if ref.Namespace != "" {
		v.add(at+".namespace", "cannot be set with kind %s", ref.Kind)
	}
	if ref.SectionName != "" {
		v.add(at+".sectionName", "cannot be set with kind %s", ref.Kind)
	}
}

package policy

import (
	"cmp"
	"slices"

	"github.com/meshext/meshext/controller/resource"
)

// kindOrder is Kuma's targetRef kind order: more specific kinds come later
// and so win the merge.
var kindOrder = map[string]int{
	resource.RefMesh:                 1,
	resource.RefDataplane:            2,
	resource.RefMeshSubset:           3,
	resource.RefMeshGateway:          4,
	resource.RefMeshService:          5,
	resource.RefMeshExternalService:  6,
	resource.RefMeshMultiZoneService: 7,
	resource.RefMeshServiceSubset:    8,
	resource.RefMeshHTTPRoute:        9,
}

// originOrder: a zone's own policy beats one synced from the global control plane.
var originOrder = map[string]int{"global": 1, "": 2, "zone": 3}

var roleOrder = map[string]int{
	resource.RoleSystem: 1, resource.RoleProducer: 2, resource.RoleConsumer: 3, resource.RoleWorkloadOwner: 4,
}

// sortEntries orders to[] items from lowest to highest precedence, as
// Kuma's outbound.Sort does: top-level kind; between two Dataplane refs, a
// name beats labels and a sectionName beats none; origin; role; the to[]
// kind (and, for MeshService, a sectionName); then the display name, the
// lexicographically smaller one winning. Kuma stops there; meshext breaks
// the remaining ties (same display name in two namespaces) by name the same
// way, then keeps the to[] order of one policy (a later item wins).
func sortEntries(es []entry) {
	slices.SortStableFunc(es, compareEntries)
}

func compareEntries(a, b entry) int {
	am, bm := a.policy.GetMeta(), b.policy.GetMeta()
	at, bt := topRef(a.policy), topRef(b.policy)
	if c := cmp.Compare(kindOrder[at.Kind], kindOrder[bt.Kind]); c != 0 {
		return c
	}
	if c := compareDataplaneRefs(at, bt); c != 0 {
		return c
	}
	if c := cmp.Compare(originOrder[am.Labels[resource.LabelOrigin]], originOrder[bm.Labels[resource.LabelOrigin]]); c != 0 {
		return c
	}
	if c := cmp.Compare(roleOrder[a.role], roleOrder[b.role]); c != 0 {
		return c
	}
	if c := cmp.Compare(kindOrder[a.ref.Kind], kindOrder[b.ref.Kind]); c != 0 {
		return c
	}
	if a.ref.Kind == resource.RefMeshService {
		if c := cmp.Compare(boolInt(a.ref.SectionName != ""), boolInt(b.ref.SectionName != "")); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(bm.DisplayName(), am.DisplayName()); c != 0 {
		return c
	}
	if c := cmp.Compare(bm.Name, am.Name); c != 0 {
		return c
	}
	if c := cmp.Compare(bm.Namespace, am.Namespace); c != 0 {
		return c
	}
	if am == bm {
		return cmp.Compare(a.index, b.index)
	}
	return 0
}

// compareDataplaneRefs is Kuma's TargetRef.CompareDataplaneKind.
func compareDataplaneRefs(a, b resource.PolicyTargetRef) int {
	if a.Kind != resource.RefDataplane || b.Kind != resource.RefDataplane {
		return 0
	}
	switch {
	case a.Name != "" && b.Labels != nil:
		return 1
	case a.Labels != nil && b.Name != "":
		return -1
	}
	return cmp.Compare(boolInt(a.SectionName != ""), boolInt(b.SectionName != ""))
}

func topRef(p resource.Policy) resource.PolicyTargetRef {
	if t := p.TopTargetRef(); t != nil {
		return *t
	}
	return resource.PolicyTargetRef{Kind: resource.RefMesh}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

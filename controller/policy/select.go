package policy

import (
	"maps"
	"slices"

	"github.com/meshext/meshext/controller/resource"
)

// matchAllTag is Kuma's tag value that matches any value.
const matchAllTag = "*"

// selectsProxy is Kuma's DppSelectedByPolicy for the top-level targetRef
// (nil = Mesh). One deliberate difference: Kuma selects a Dataplane only
// through its inbounds, and every Kuma Dataplane has one; meshext's
// Dataplanes may be pure clients, so Mesh and Dataplane targetRefs select
// a Dataplane whatever its inbounds (tag-based kinds still need an inbound
// whose tags match).
//
// A ZoneEgress is selected by a Mesh targetRef without proxyTypes (it is
// neither a sidecar nor a gateway) and by a Dataplane targetRef that names
// it (name and namespace, or labels, as MeshTrafficPermission selects it),
// never by a namespaced (consumer, workload-owner) policy or by workload
// tags. Kuma applies every policy of the mesh at a ZoneEgress whatever its
// top-level targetRef; meshext keeps a policy aimed at some workloads from
// changing the egress every workload shares.
func selectsProxy(pol resource.Policy, role string, p Proxy) bool {
	m := pol.GetMeta()
	ref := resource.PolicyTargetRef{Kind: resource.RefMesh}
	if t := pol.TopTargetRef(); t != nil {
		ref = *t
	}
	dp := p.Dataplane
	switch {
	case dp != nil:
		if !selectedByZone(m, role, dp.Labels) || !selectedByNamespace(m, role, dp) {
			return false
		}
	case role == resource.RoleConsumer || role == resource.RoleWorkloadOwner:
		return false // namespaced policies select only proxies of their namespace
	case p.ZoneEgress != nil:
		if !selectedByZone(m, role, p.ZoneEgress.Labels) {
			return false
		}
	}
	switch ref.Kind {
	case resource.RefMesh:
		if p.ZoneEgress != nil {
			return ref.ProxyTypes == nil || len(*ref.ProxyTypes) == 0
		}
		return sidecarOK(ref.ProxyTypes)
	case resource.RefDataplane:
		if ref.Name == "" && ref.Namespace == "" && ref.Labels == nil {
			return true
		}
		if p.ZoneEgress != nil {
			return p.ZoneEgress.SelectedByProxyRef(ref.Name, ref.Namespace, ref.Labels)
		}
		if dp == nil {
			return false
		}
		if ref.Name != "" && identityOf(&dp.Meta, resource.RefDataplane) == targetIdentity(m, ref) {
			return true
		}
		return ref.Labels != nil && subset(ref.Labels, dp.Labels)
	case resource.RefMeshSubset:
		return dp != nil && sidecarOK(ref.ProxyTypes) && anyInbound(dp, ref.Tags)
	case resource.RefMeshService:
		return dp != nil && anyInbound(dp, map[string]string{resource.LabelService: ref.Name})
	case resource.RefMeshServiceSubset:
		tags := maps.Clone(ref.Tags)
		if tags == nil {
			tags = map[string]string{}
		}
		tags[resource.LabelService] = ref.Name
		return dp != nil && anyInbound(dp, tags)
	}
	return false // MeshGateway, MeshHTTPRoute: validation refuses them
}

// sidecarOK: meshext's proxies are sidecars; proxyTypes [Gateway] skips them.
func sidecarOK(types *[]string) bool {
	return types == nil || len(*types) == 0 || slices.Contains(*types, resource.ProxyTypeSidecar)
}

// anyInbound is Kuma's inboundsSelectedByTags: some inbound's tags match
// selector ("*" matches any value; an empty selector matches any inbound).
func anyInbound(dp *resource.Dataplane, selector map[string]string) bool {
	for _, in := range dp.Networking.Inbound {
		ok := true
		for k, v := range selector {
			got, has := in.Tags[k]
			if !has || (got != v && v != matchAllTag) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// selectedByZone is Kuma's dppSelectedByZone: a policy created in a zone
// selects only that zone's proxies (producer policies select everywhere).
func selectedByZone(pm *resource.Meta, role string, proxyLabels map[string]string) bool {
	if role == resource.RoleProducer {
		return true
	}
	origin, ok := proxyLabels[resource.LabelOrigin]
	if !ok || origin == "global" {
		return true
	}
	if pm.Labels[resource.LabelOrigin] != "zone" {
		return true
	}
	zone, ok := pm.Labels[resource.LabelZone]
	if !ok {
		return true
	}
	dz, ok := proxyLabels[resource.LabelZone]
	return !ok || dz == zone
}

// selectedByNamespace is Kuma's dppSelectedByNamespace: consumer and
// workload-owner policies select only proxies of their own namespace.
func selectedByNamespace(pm *resource.Meta, role string, dp *resource.Dataplane) bool {
	if role != resource.RoleConsumer && role != resource.RoleWorkloadOwner {
		return true
	}
	ns, ok := pm.Labels[resource.LabelNamespace]
	return ok && ns == dp.Labels[resource.LabelNamespace]
}

func subset(want, have map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// identity is Kuma's KRI of a resource: type, mesh, zone, namespace and
// display name.
type identity struct {
	kind, mesh, zone, namespace, name string
}

func identityOf(m *resource.Meta, kind string) identity {
	return identity{kind: kind, mesh: m.Mesh, zone: m.Labels[resource.LabelZone], namespace: m.Labels[resource.LabelNamespace], name: m.DisplayName()}
}

// targetIdentity is Kuma's TargetRefToKRI: a name reference resolves in the
// policy's mesh and zone, and in ref.namespace or else the policy's own.
func targetIdentity(pm *resource.Meta, ref resource.PolicyTargetRef) identity {
	ns := ref.Namespace
	if ns == "" {
		ns = pm.Labels[resource.LabelNamespace]
	}
	return identity{kind: ref.Kind, mesh: pm.Mesh, zone: pm.Labels[resource.LabelZone], namespace: ns, name: ref.Name}
}

package policy

import (
	"slices"

	"github.com/meshext/meshext/controller/resource"
)

// DefaultNames are the prefixes of Kuma's default policy names: Kuma
// creates "<prefix>-<mesh>" for every mesh (pkg/defaults/mesh, v2.14).
var DefaultNames = map[resource.Kind]string{
	resource.KindMeshTimeout:        "mesh-timeout-all",
	resource.KindMeshCircuitBreaker: "mesh-circuit-breaker-all",
	resource.KindMeshRetry:          "mesh-retry-all",
}

// defaultKinds is the order defaults are listed in.
var defaultKinds = []resource.Kind{resource.KindMeshTimeout, resource.KindMeshCircuitBreaker, resource.KindMeshRetry}

// defaults returns Kuma's default policies for every mesh that has a Mesh
// resource or a MeshExternalService, skipping the kinds the Mesh's
// skipCreatingInitialPolicies or opts.SkipDefaults list ("*" = all), and
// any the user defines under the same kind, mesh and name (theirs wins, as
// in Kuma, which never overwrites an existing default).
//
// Kuma also creates mesh-gateways-timeout-all-<mesh>, which targets only
// gateway proxies (proxyTypes: [Gateway]) and so never applies in meshext,
// and gives mesh-timeout-all a from[] part for inbound traffic, which
// meshext does not proxy: both are left out.
func defaults(set *resource.Set, opts Options) []resource.Policy {
	zone := opts.Zone
	if zone == "" {
		zone = "default"
	}
	var meshes []string
	for _, m := range set.Meshes {
		meshes = append(meshes, m.Name)
	}
	for _, s := range set.MeshExternalServices {
		meshes = append(meshes, s.Mesh)
	}
	slices.Sort(meshes)
	meshes = slices.Compact(meshes)

	taken := map[string]bool{}
	for _, p := range set.Policies {
		taken[p.GetMeta().Key()] = true
	}
	var out []resource.Policy
	for _, mesh := range meshes {
		skip := slices.Clone(opts.SkipDefaults)
		if m := set.Mesh(mesh); m != nil {
			skip = append(skip, m.SkipCreatingInitialPolicies...)
		}
		if slices.Contains(skip, "*") {
			continue
		}
		for _, k := range defaultKinds {
			if slices.Contains(skip, string(k)) {
				continue
			}
			meta := resource.Meta{Kind: k, Mesh: mesh, Name: DefaultNames[k] + "-" + mesh, Labels: map[string]string{
				resource.LabelMesh: mesh, resource.LabelOrigin: "zone", resource.LabelZone: zone, resource.LabelEnv: "universal",
			}}
			if taken[meta.Key()] {
				continue
			}
			out = append(out, defaultPolicy(meta))
		}
	}
	return out
}

func u32(n uint32) *uint32 { return &n }

// defaultPolicy builds Kuma v2.14's default of meta's kind (the values of
// pkg/defaults/mesh and pkg/plugins/policies/core/defaults).
func defaultPolicy(meta resource.Meta) resource.Policy {
	mesh := &resource.PolicyTargetRef{Kind: resource.RefMesh}
	to := resource.PolicyTargetRef{Kind: resource.RefMesh}
	switch meta.Kind {
	case resource.KindMeshTimeout:
		sidecar := []string{resource.ProxyTypeSidecar}
		return &resource.MeshTimeout{Meta: meta, Spec: resource.MeshTimeoutSpec{
			TargetRef: &resource.PolicyTargetRef{Kind: resource.RefMesh, ProxyTypes: &sidecar},
			To: []resource.MeshTimeoutTo{{TargetRef: to, Default: resource.MeshTimeoutConf{
				ConnectionTimeout: resource.NewDuration("5s"),
				IdleTimeout:       resource.NewDuration("1h"),
				HTTP: &resource.MeshTimeoutHTTP{
					RequestTimeout:    resource.NewDuration("15s"),
					StreamIdleTimeout: resource.NewDuration("30m"),
				},
			}}},
		}}
	case resource.KindMeshCircuitBreaker:
		return &resource.MeshCircuitBreaker{Meta: meta, Spec: resource.MeshCircuitBreakerSpec{
			TargetRef: mesh,
			To: []resource.MeshCircuitBreakerTo{{TargetRef: to, Default: resource.MeshCircuitBreakerConf{
				ConnectionLimits: &resource.ConnectionLimits{
					MaxConnections: u32(1024), MaxPendingRequests: u32(1024), MaxRequests: u32(1024), MaxRetries: u32(3),
				},
			}}},
		}}
	case resource.KindMeshRetry:
		backOff := func() *resource.MeshRetryBackOff {
			return &resource.MeshRetryBackOff{BaseInterval: resource.NewDuration("25ms"), MaxInterval: resource.NewDuration("250ms")}
		}
		return &resource.MeshRetry{Meta: meta, Spec: resource.MeshRetrySpec{
			TargetRef: mesh,
			To: []resource.MeshRetryTo{{TargetRef: to, Default: resource.MeshRetryConf{
				TCP:  &resource.MeshRetryTCP{MaxConnectAttempt: u32(5)},
				HTTP: &resource.MeshRetryHTTP{NumRetries: u32(5), PerTryTimeout: resource.NewDuration("16s"), BackOff: backOff()},
				GRPC: &resource.MeshRetryGRPC{NumRetries: u32(5), PerTryTimeout: resource.NewDuration("16s"), BackOff: backOff()},
			}}},
		}}
	}
	panic("policy: no default for " + string(meta.Kind))
}

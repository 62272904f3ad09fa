package validate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meshext/meshext/controller/resource"
)

var (
	lbTypes       = []string{resource.LBRoundRobin, resource.LBLeastRequest, resource.LBRingHash, resource.LBRandom, resource.LBMaglev}
	hashFunctions = []string{resource.HashFunctionXXHash, resource.HashFunctionMurmurHash2}
	hashTypes     = []string{resource.HashHeader, resource.HashCookie, resource.HashConnection, resource.HashSourceIP,
		resource.HashQueryParameter, resource.HashFilterState}
)

const (
	maxRingSize       = 8000000
	maxMaglevTable    = 5000011
	minLeastReqChoice = 2
)

// meshLoadBalancingStrategy applies Kuma v2.14's validator in its order.
// Deliberate difference: Kuma 2.14 leaves MeshExternalService out of the
// to[] kinds (so its own "only allowed with targetRef.kind: Mesh" rule can
// never fire); meshext accepts it, with that rule, because load balancing
// across a MeshExternalService's endpoints is what users ask for
// (kumahq/kuma#10725). localityAwareness is refused: a
// MeshExternalService's endpoints have no zones or tags.
func meshLoadBalancingStrategy(v *violations, r *resource.MeshLoadBalancingStrategy) {
	s := &r.Spec
	policyRole(v, r)
	top := topRef(v, s.TargetRef, refOpts{kinds: topKindsGateway, gatewayListenerTagsAllowed: true})
	for i := range s.To {
		at := fmt.Sprintf("spec.to[%d]", i)
		to := &s.To[i]
		opts := refOpts{kinds: []string{resource.RefMesh, resource.RefMeshService, resource.RefMeshMultiZoneService,
			resource.RefMeshHTTPRoute, resource.RefMeshExternalService}}
		if top == resource.RefMeshGateway {
			if to.Default.LoadBalancer != nil {
				opts = refOpts{kinds: []string{resource.RefMesh},
					kindsErr: fmt.Sprintf("value '%s' is not supported, only %s is allowed if loadBalancer is set", top, resource.RefMesh)}
			} else {
				opts = refOpts{kinds: []string{resource.RefMesh, resource.RefMeshService, resource.RefMeshMultiZoneService}}
			}
		}
		toRef(v, at, &to.TargetRef, opts)
		if to.TargetRef.Kind == resource.RefMeshExternalService && top != resource.RefMesh {
			v.add(at+".targetRef.kind", "kind MeshExternalService is only allowed with targetRef.kind: Mesh as it is configured on the Zone Egress and shared by all clients in the mesh")
		}
		lbConf(v, at+".default", &to.Default, to.TargetRef.Kind)
	}
}

func lbConf(v *violations, at string, c *resource.MeshLoadBalancingStrategyConf, toKind string) {
	if toKind == resource.RefMeshHTTPRoute {
		hashPolicies(v, at+".hashPolicies", c.HashPolicies)
		const msg = "field is not allowed when targetRef.kind is MeshHTTPRoute, only hashPolicies is supported"
		if c.LoadBalancer != nil {
			v.add(at+".loadBalancer", msg)
		}
		if c.LocalityAwareness != nil {
			v.add(at+".localityAwareness", msg)
		}
		return
	}
	loadBalancer(v, at+".loadBalancer", c.LoadBalancer)
	if c.LocalityAwareness != nil {
		v.add(at+".localityAwareness", "meshext does not support localityAwareness: a MeshExternalService's endpoints have no zones "+
			"or tags to balance by (spec.endpoints[].priority orders them)")
	}
	hashPolicies(v, at+".hashPolicies", c.HashPolicies)
	if c.HashPolicies != nil && c.LoadBalancer != nil {
		if c.LoadBalancer.RingHash != nil && c.LoadBalancer.RingHash.HashPolicies != nil {
			v.add(at+".loadBalancer.ringHash.hashPolicies", "hashPolicies already specified in the root level")
		}
		if c.LoadBalancer.Maglev != nil && c.LoadBalancer.Maglev.HashPolicies != nil {
			v.add(at+".loadBalancer.maglev.hashPolicies", "hashPolicies already specified in the root level")
		}
	}
}

func loadBalancer(v *violations, at string, lb *resource.LoadBalancer) {
	if lb == nil {
		return
	}
	if !slices.Contains(lbTypes, lb.Type) { // Kuma's schema enum
		v.add(at+".type", "%s", mustBeOneOf("type", lbTypes...))
	}
	switch lb.Type {
	case resource.LBRingHash:
		if rh := lb.RingHash; rh != nil {
			hashPolicies(v, at+".ringHash.hashPolicies", rh.HashPolicies)
			if rh.HashFunction != nil && !slices.Contains(hashFunctions, *rh.HashFunction) {
				v.add(at+".ringHash.hashFunction", "%s", mustBeOneOf("hashFunction", hashFunctions...))
			}
			between(v, at+".ringHash.minRingSize", rh.MinRingSize, 1, maxRingSize)
			between(v, at+".ringHash.maxRingSize", rh.MaxRingSize, 1, maxRingSize)
		}
	case resource.LBMaglev:
		if m := lb.Maglev; m != nil {
			hashPolicies(v, at+".maglev.hashPolicies", m.HashPolicies)
			between(v, at+".maglev.tableSize", m.TableSize, 1, maxMaglevTable)
		}
	case resource.LBLeastRequest:
		if lr := lb.LeastRequest; lr != nil {
			if b := lr.ActiveRequestBias; b != nil {
				if f, err := b.Float(); err != nil {
					v.add(at+".leastRequest.activeRequestBias", msgValidNumber)
				} else if f < 0 {
					v.add(at+".leastRequest.activeRequestBias", "must be greater or equal then: 0")
				}
			}
			if lr.ChoiceCount != nil && *lr.ChoiceCount < minLeastReqChoice {
				v.add(at+".leastRequest.choiceCount", "must be at least %d", minLeastReqChoice)
			}
		}
	}
	// meshext: settings of another algorithm would be silently ignored.
	for _, o := range []struct {
		field, typ string
		set        bool
	}{
		{"roundRobin", resource.LBRoundRobin, lb.RoundRobin != nil},
		{"leastRequest", resource.LBLeastRequest, lb.LeastRequest != nil},
		{"ringHash", resource.LBRingHash, lb.RingHash != nil},
		{"random", resource.LBRandom, lb.Random != nil},
		{"maglev", resource.LBMaglev, lb.Maglev != nil},
	} {
		if o.set && o.typ != lb.Type && slices.Contains(lbTypes, lb.Type) {
			v.add(at+"."+o.field, "must not be set when type is %s", lb.Type)
		}
	}
}

func between(v *violations, at string, n *uint32, lo, hi uint32) {
	if n != nil && (*n < lo || *n > hi) {
		v.add(at, "must be between %d and %d", lo, hi)
	}
}

// hashPolicies is Kuma's validateHashPolicies plus its schema (type enum,
// non-empty names).
func hashPolicies(v *violations, at string, hps *[]resource.HashPolicy) {
	if hps == nil {
		return
	}
	for i, p := range *hps {
		pat := fmt.Sprintf("%s[%d]", at, i)
		switch p.Type {
		case resource.HashHeader:
			if p.Header == nil {
				v.add(pat+".header", msgMustBeDefined)
			} else if p.Header.Name == "" {
				v.add(pat+".header.name", msgMustNotBeEmpty)
			}
		case resource.HashCookie:
			switch {
			case p.Cookie == nil:
				v.add(pat+".cookie", msgMustBeDefined)
			case p.Cookie.Path != nil && !strings.HasPrefix(*p.Cookie.Path, "/"):
				v.add(pat+".cookie.path", "must be an absolute path")
			}
			if p.Cookie != nil && p.Cookie.Name == "" {
				v.add(pat+".cookie.name", msgMustNotBeEmpty)
			}
		case resource.HashQueryParameter:
			if p.QueryParameter == nil {
				v.add(pat+".queryParameter", msgMustBeDefined)
			} else if p.QueryParameter.Name == "" {
				v.add(pat+".queryParameter.name", msgMustNotBeEmpty)
			}
		case resource.HashFilterState:
			if p.FilterState == nil {
				v.add(pat+".filterState", msgMustBeDefined)
			} else if p.FilterState.Key == "" {
				v.add(pat+".filterState.key", msgMustNotBeEmpty)
			}
		case resource.HashConnection, resource.HashSourceIP:
			if p.Connection == nil {
				v.add(pat+".connection", msgMustBeDefined)
			}
		default:
			v.add(pat+".type", "%s", mustBeOneOf("type", hashTypes...))
		}
	}
}

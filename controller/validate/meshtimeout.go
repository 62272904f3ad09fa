package validate

import (
	"fmt"

	"github.com/meshext/meshext/controller/resource"
)

// meshTimeout applies Kuma v2.14's MeshTimeout validator in its order, then
// meshext's refusals: inbound from/rules, and per-route fields Kuma accepts
// but never applies to a route.
func meshTimeout(v *violations, r *resource.MeshTimeout) {
	s := &r.Spec
	role := policyRole(v, r)
	top := resource.RefMesh
	if s.TargetRef != nil {
		opts := refOpts{kinds: topKindsWorkload}
		if role == resource.RoleSystem {
			opts = refOpts{kinds: topKindsSystemRoute, gatewayListenerTagsAllowed: true}
		}
		opts.inbound = nonEmptyList(s.From) || nonEmptyList(s.Rules)
		if policyRef(v, "spec.targetRef", s.TargetRef, opts) {
			meshextTop(v, s.TargetRef)
		}
		top = s.TargetRef.Kind
	}
	nTo, nFrom, nRules := len(s.To), sliceLen(s.From), sliceLen(s.Rules)
	if nRules > 0 && (nTo > 0 || nFrom > 0) {
		v.add("spec", "fields 'to' and 'from' must be empty when 'rules' is defined")
	}
	if nRules == 0 && nTo == 0 && nFrom == 0 {
		v.add("spec", "at least one of 'from', 'to' or 'rules' has to be defined")
	}
	meshextInbound(v, s.From, s.Rules)
	for i := range s.To {
		at := fmt.Sprintf("spec.to[%d]", i)
		to := &s.To[i]
		kinds := []string{resource.RefMesh, resource.RefMeshService, resource.RefMeshExternalService, resource.RefMeshMultiZoneService, resource.RefMeshHTTPRoute}
		if top == resource.RefMeshHTTPRoute || top == resource.RefMeshGateway {
			kinds = []string{resource.RefMesh, resource.RefMeshExternalService}
		}
		if policyRef(v, at+".targetRef", &to.TargetRef, refOpts{kinds: kinds}) {
			meshextTo(v, at+".targetRef", &to.TargetRef)
		}
		if meshTimeoutDefault(v, at+".default", &to.Default, top) && to.TargetRef.Kind == resource.RefMeshHTTPRoute {
			meshTimeoutRoute(v, at+".default", &to.Default)
		}
	}
}

// meshTimeoutDefault is Kuma's validateDefault; false when the conf is empty.
func meshTimeoutDefault(v *violations, at string, c *resource.MeshTimeoutConf, top string) bool {
	if c.ConnectionTimeout == nil && c.IdleTimeout == nil && c.HTTP == nil {
		v.add(at, "at least one timeout should be configured")
		return false
	}
	if top == resource.RefMeshHTTPRoute {
		const msg = "can't be specified when top-level TargetRef is referencing MeshHTTPRoute"
		if c.ConnectionTimeout != nil {
			v.add(at+".connectionTimeout", msg)
		}
		if c.IdleTimeout != nil {
			v.add(at+".idleTimeout", msg)
		}
		if h := c.HTTP; h != nil {
			if h.MaxStreamDuration != nil {
				v.add(at+".http.maxStreamDuration", msg)
			}
			if h.MaxConnectionDuration != nil {
				v.add(at+".http.maxConnectionDuration", msg)
			}
		}
	}
	durationGT0(v, at+".connectionTimeout", c.ConnectionTimeout)
	durationNonNeg(v, at+".idleTimeout", c.IdleTimeout)
	if h := c.HTTP; h != nil {
		at := at + ".http"
		if h.RequestTimeout == nil && h.StreamIdleTimeout == nil && h.MaxStreamDuration == nil && h.MaxConnectionDuration == nil {
			v.add(at, "at least one timeout in this section should be configured")
		}
		durationNonNeg(v, at+".requestTimeout", h.RequestTimeout)
		durationNonNeg(v, at+".streamIdleTimeout", h.StreamIdleTimeout)
		durationNonNeg(v, at+".maxStreamDuration", h.MaxStreamDuration)
		durationNonNeg(v, at+".maxConnectionDuration", h.MaxConnectionDuration)
		durationNonNeg(v, at+".requestHeadersTimeout", h.RequestHeadersTimeout)
	}
	return true
}

// meshTimeoutRoute refuses, on a to[] item targeting a MeshHTTPRoute, the
// fields Kuma accepts there but applies only per listener or cluster.
func meshTimeoutRoute(v *violations, at string, c *resource.MeshTimeoutConf) {
	const msg = "only http.requestTimeout and http.streamIdleTimeout apply to a MeshHTTPRoute; set this on a Mesh or MeshExternalService targetRef"
	if c.ConnectionTimeout != nil {
		v.add(at+".connectionTimeout", msg)
	}
	if c.IdleTimeout != nil {
		v.add(at+".idleTimeout", msg)
	}
	if h := c.HTTP; h != nil {
		if h.MaxStreamDuration != nil {
			v.add(at+".http.maxStreamDuration", msg)
		}
		if h.MaxConnectionDuration != nil {
			v.add(at+".http.maxConnectionDuration", msg)
		}
		if h.RequestHeadersTimeout != nil {
			v.add(at+".http.requestHeadersTimeout", msg)
		}
	}
}

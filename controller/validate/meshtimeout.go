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
	opts := roleOpts(policyRole(v, r), topKindsSystemRoute)
	opts.inbound = nonEmptyList(s.From) || nonEmptyList(s.Rules)
	top := topRef(v, s.TargetRef, opts)
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
		toRef(v, at, &to.TargetRef, toKindsUnder(top, toKindsAll, toKindsGatewayRoute, resource.RefMeshHTTPRoute, resource.RefMeshGateway))
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
		refuseTimeouts(v, at, c, false, "can't be specified when top-level TargetRef is referencing MeshHTTPRoute")
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
	refuseTimeouts(v, at, c, true, "only http.requestTimeout and http.streamIdleTimeout apply to a MeshHTTPRoute; "+
		"set this on a Mesh or MeshExternalService targetRef")
}

// refuseTimeouts reports, with msg, each timeout a route cannot carry that
// c sets: the connection and idle timeouts, the stream and connection
// durations, and (headers) the request-headers timeout.
func refuseTimeouts(v *violations, at string, c *resource.MeshTimeoutConf, headers bool, msg string) {
	type field struct {
		path string
		set  bool
	}
	fields := []field{{"connectionTimeout", c.ConnectionTimeout != nil}, {"idleTimeout", c.IdleTimeout != nil}}
	if h := c.HTTP; h != nil {
		fields = append(fields, field{"http.maxStreamDuration", h.MaxStreamDuration != nil},
			field{"http.maxConnectionDuration", h.MaxConnectionDuration != nil},
			field{"http.requestHeadersTimeout", headers && h.RequestHeadersTimeout != nil})
	}
	for _, f := range fields {
		if f.set {
			v.add(at+"."+f.path, "%s", msg)
		}
	}
}

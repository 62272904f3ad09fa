package render

import (
	"maps"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// policyClone is the cluster the policy configurers change for one set of
// settings: a new message that refers to base's field values (the TLS
// context, the endpoints and the rest stay as they are and are large), with
// deep copies of the fields a configurer changes in place. Every other field
// a configurer sets, it replaces, and never mutates: base is still served to
// nodes without policies and kept by the memo (TestPolicyClonesLeaveTheBase
// holds every configurer to that). At 10k services this halves the clusters'
// memory while rendering, and in meshext run's memo for good.
func policyClone(base *clusterv3.Cluster) *clusterv3.Cluster {
	c := &clusterv3.Cluster{}
	dst := c.ProtoReflect()
	base.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	// Changed in place: the circuit breakers' thresholds, outlier detection,
	// the common LB config (health checks' panic threshold), and the health
	// check list (appended to).
	c.CircuitBreakers = cloneOrNil(base.CircuitBreakers)
	c.OutlierDetection = cloneOrNil(base.OutlierDetection)
	c.CommonLbConfig = cloneOrNil(base.CommonLbConfig)
	c.HealthChecks = nil
	for _, hc := range base.HealthChecks {
		c.HealthChecks = append(c.HealthChecks, proto.Clone(hc).(*corev3.HealthCheck))
	}
	// A configurer replaces the whole map; a new map keeps a stray entry
	// write off the base anyway (the values are replaced, never changed).
	if base.TypedExtensionProtocolOptions != nil {
		c.TypedExtensionProtocolOptions = maps.Clone(base.TypedExtensionProtocolOptions)
	}
	return c
}

func cloneOrNil[T proto.Message](m T) T {
	var zero T
	if m.ProtoReflect().IsValid() {
		return proto.Clone(m).(T)
	}
	return zero
}

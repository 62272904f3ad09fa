package render

import (
	"maps"
	"reflect"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
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
	// Field by field of the Go struct: protoreflect's Range and Set cost
	// several times as much, at 10k services a tenth of a render. Unset
	// fields copy as unset; the oneof wrappers are shared like the rest.
	dst, src := reflect.ValueOf(c).Elem(), reflect.ValueOf(base).Elem()
	for _, i := range clusterFields() {
		dst.Field(i).Set(src.Field(i))
	}
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

// clusterFields are the indexes of Cluster's exported Go fields: its
// message fields and oneofs, without the protobuf runtime's own state
// (unexported), which a new message must not share.
var clusterFields = sync.OnceValue(func() []int {
	t := reflect.TypeFor[clusterv3.Cluster]()
	var out []int
	for i := range t.NumField() {
		if t.Field(i).IsExported() {
			out = append(out, i)
		}
	}
	return out
})

func cloneOrNil[T proto.Message](m T) T {
	var zero T
	if m.ProtoReflect().IsValid() {
		return proto.Clone(m).(T)
	}
	return zero
}

package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
)

// BenchmarkFor: one proxy, 1,000 MeshExternalServices, Kuma's three
// defaults and 20 policies (mesh-wide and per-service): the cost render
// will pay per (proxy, service) pair, each build starting with an empty memo.
func BenchmarkFor(b *testing.B) {
	var y strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&y, "type: MeshExternalService\nname: s%d\nmesh: default\nspec: {match: {port: 80, protocol: http}, endpoints: [{address: s%d.example, port: 80}]}\n---\n", i, i)
	}
	for i := range 10 {
		fmt.Fprintf(&y, "type: MeshTimeout\nname: t%d\nmesh: default\nspec: {to: [{targetRef: {kind: Mesh}, default: {http: {requestTimeout: %ds}}}]}\n---\n", i, i+1)
		fmt.Fprintf(&y, "type: MeshRetry\nname: r%d\nmesh: default\nspec: {to: [{targetRef: {kind: MeshExternalService, name: s%d}, default: {http: {numRetries: 2}}}]}\n---\n", i, i)
	}
	objs, errs := resource.ParseBytes("bench.yaml", []byte(y.String()))
	if len(errs) > 0 {
		b.Fatal(errs[0])
	}
	set := &resource.Set{}
	for _, o := range objs {
		if e := set.Add(o); e != nil {
			b.Fatal(e)
		}
	}
	set.ComputeLabels(resource.Options{})
	p := policy.Proxies(nil)[0]
	for b.Loop() {
		r := policy.Resolve(set, policy.Options{}) // a fresh resolver per build, as the run loop has
		for _, mes := range set.MeshExternalServices {
			if r.For(p, mes) == nil {
				b.Fatal("nil")
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(len(set.MeshExternalServices)), "µs/service")
}

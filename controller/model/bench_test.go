package model

import (
	"fmt"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/resource"
)

// benchSet is n plain MeshExternalServices and one generator selecting them all.
func benchSet(b *testing.B, n int) *resource.Set {
	var y strings.Builder
	y.WriteString("type: HostnameGenerator\nname: all\nspec:\n  selector: {meshExternalService: {matchLabels: {kuma.io/origin: zone}}}\n  template: '{{ .DisplayName }}.{{ .Mesh }}.ext.local'\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&y, "---\ntype: MeshExternalService\nname: svc-%05d\nmesh: m%d\nspec: {match: {port: 443}, endpoints: [{address: svc%d.example.com, port: 443}]}\n", i, i%10, i)
	}
	objs, errs := resource.ParseBytes("bench.yaml", []byte(y.String()))
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	set := &resource.Set{}
	for _, o := range objs {
		set.Add(o)
	}
	set.ComputeLabels(resource.Options{})
	return set
}

// BenchmarkBuild measures a rebuild of 1000 services with known VIPs (the
// steady state of `meshext run` after a file change).
func BenchmarkBuild(b *testing.B) {
	set := benchSet(b, 1000)
	alloc, err := ipam.Open(b.TempDir(), "")
	if err != nil {
		b.Fatal(err)
	}
	if w := Build(set, Options{IPAM: alloc}); len(w.Services) != 1000 || len(w.Problems) > 0 {
		b.Fatalf("%d services, problems %v", len(w.Services), w.Problems)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Build(set, Options{IPAM: alloc})
	}
}

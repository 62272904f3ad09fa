package hostname

import (
	"fmt"
	"testing"

	"github.com/meshext/meshext/controller/resource"
)

// BenchmarkGenerate: 2 generators over 1000 services, half of them colliding.
func BenchmarkGenerate(b *testing.B) {
	var svcs []*resource.MeshExternalService
	for i := 0; i < 1000; i++ {
		s := &resource.MeshExternalService{}
		s.Kind, s.Name, s.Mesh = resource.KindMeshExternalService, fmt.Sprintf("svc-%04d", i), "default"
		s.Labels = map[string]string{resource.LabelOrigin: "zone", resource.LabelDisplayName: fmt.Sprintf("d%d", i/2)}
		svcs = append(svcs, s)
	}
	gen := func(name, tmpl string) *resource.HostnameGenerator {
		g := &resource.HostnameGenerator{}
		g.Name = name
		g.Spec.Template = tmpl
		g.Spec.Selector.MeshExternalService = &resource.LabelSelector{MatchLabels: map[string]string{resource.LabelOrigin: "zone"}}
		return g
	}
	in := Input{Generators: []*resource.HostnameGenerator{gen("a", "{{ .DisplayName }}.a.local"), gen("b", "{{ .Name }}.b.local")}, Services: svcs}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := Generate(in); len(r) != 1000 {
			b.Fatal(len(r))
		}
	}
}

package hostname

import (
	"fmt"
	"testing"

	"github.com/meshext/meshext/controller/resource"
)

// BenchmarkGenerate: 2 generators over 1000 services, half of them colliding.
func BenchmarkGenerate(b *testing.B) {
	svcs := zoneServices(1000)
	gen := zoneGenerator
	in := Input{Generators: []*resource.HostnameGenerator{gen("a", "{{ .DisplayName }}.a.local"), gen("b", "{{ .Name }}.b.local")}, Services: svcs}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := Generate(in); len(r) != 1000 {
			b.Fatal(len(r))
		}
	}
}

// zoneServices is n zone-origin services, svc-0000 onwards, whose display
// names pair up (d0, d0, d1, d1, ...), so a DisplayName template collides.
func zoneServices(n int) []*resource.MeshExternalService {
	svcs := make([]*resource.MeshExternalService, 0, n)
	for i := 0; i < n; i++ {
		s := &resource.MeshExternalService{}
		s.Kind, s.Name, s.Mesh = resource.KindMeshExternalService, fmt.Sprintf("svc-%04d", i), "default"
		s.Labels = map[string]string{resource.LabelOrigin: "zone", resource.LabelDisplayName: fmt.Sprintf("d%d", i/2)}
		svcs = append(svcs, s)
	}
	return svcs
}

// zoneGenerator is a HostnameGenerator named name selecting zone-origin services.
func zoneGenerator(name, tmpl string) *resource.HostnameGenerator {
	g := &resource.HostnameGenerator{}
	g.Name = name
	g.Spec.Template = tmpl
	g.Spec.Selector.MeshExternalService = &resource.LabelSelector{MatchLabels: map[string]string{resource.LabelOrigin: "zone"}}
	return g
}

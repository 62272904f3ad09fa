package render

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
)

// benchWorld has n TLS services, each with two generated hostnames, two
// DNS-name endpoints, a CA, and a distinct VIP; every second one is HTTP.
func benchWorld(n int) *model.World {
	w := &model.World{Meshes: map[string]*resource.Mesh{}}
	for i := 0; i < n; i++ {
		proto := "tcp"
		if i%2 == 1 {
			proto = "http"
		}
		s := svc(fmt.Sprintf("svc-%05d", i), proto, 443,
			ep(fmt.Sprintf("a%d.example.com", i), 443), ep(fmt.Sprintf("b%d.example.net", i), 443))
		s.TLS = tlsSecured()
		s.Hostnames = []string{s.Name + ".svc.meshext.local", s.Name + ".extsvc.example"}
		s.VIP = netip.AddrFrom4([4]byte{242, byte(i >> 16), byte(i >> 8), byte(i)})
		w.Services = append(w.Services, s)
	}
	return w
}

// BenchmarkRender is a full Render (clusters, secrets, listeners, validation,
// packing and version hashing) of 1 to 10k services.
func BenchmarkRender(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			w := benchWorld(n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out, err := Render(w, Options{})
				if err != nil {
					b.Fatal(err)
				}
				if got := len(out.Nodes[DefaultNodeID].Clusters); got != n+1 {
					b.Fatalf("%d clusters, want %d", got, n+1)
				}
			}
		})
	}
}

// BenchmarkEncodeCDS is the cost of turning a rendered node into cds.json.
func BenchmarkEncodeCDS(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			out, err := Render(benchWorld(n), Options{})
			if err != nil {
				b.Fatal(err)
			}
			node := out.Nodes[DefaultNodeID]
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := node.CDS(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRenderWithDefaultPolicies is BenchmarkRender with Kuma's
// default policies resolved and rendered for every service (what a World
// from model.Build has unless skipCreatingInitialPolicies).
func BenchmarkRenderWithDefaultPolicies(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			w := benchWorld(n)
			set := &resource.Set{}
			for _, s := range w.Services {
				s.Resource = &resource.MeshExternalService{Meta: resource.Meta{Kind: resource.KindMeshExternalService, Mesh: s.Mesh, Name: s.Name}}
				set.MeshExternalServices = append(set.MeshExternalServices, s.Resource)
			}
			w.Policies = policy.Resolve(set, policy.Options{})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := Render(w, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

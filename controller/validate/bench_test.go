package validate_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

// BenchmarkValidate measures validating a drop directory's worth of
// MeshExternalServices (with TLS and data sources) plus a generator.
func BenchmarkValidate(b *testing.B) {
	for _, n := range []int{100, 2000} {
		b.Run(fmt.Sprintf("mes=%d", n), func(b *testing.B) {
			var src strings.Builder
			src.WriteString("type: HostnameGenerator\nname: g\nspec:\n  selector: {meshExternalService: {}}\n  template: \"{{ .DisplayName }}.extsvc.mesh.local\"\n")
			for i := range n {
				fmt.Fprintf(&src, `---
type: MeshExternalService
name: svc-%d
spec:
  match: {port: %d, protocol: http}
  endpoints:
    - {address: svc-%d.example.com, port: 443, priority: 0}
    - {address: 10.0.%d.%d, port: 443, priority: 1}
  tls:
    enabled: true
    version: {min: TLS12, max: TLS13}
    verification:
      serverName: svc-%d.example.com
      subjectAltNames: [{type: Exact, value: svc-%d.example.com}]
      caCert: {inline: dGVzdA==}
      clientCert: {secret: cert}
      clientKey: {secret: key}
`, i, 1+i%65535, i, (i/250)%256, i%250, i, i)
			}
			objs, errs := resource.ParseBytes("bench.yaml", []byte(src.String()))
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
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				valid, problems := validate.Validate(set)
				if len(problems) > 0 || len(valid.MeshExternalServices) != n {
					b.Fatalf("%d problems, %d valid", len(problems), len(valid.MeshExternalServices))
				}
			}
		})
	}
}

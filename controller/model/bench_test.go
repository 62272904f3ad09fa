package model

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	cpworkload "github.com/meshext/meshext/bench/workload" // meshext-cpbench's resource set
	"github.com/meshext/meshext/controller/hostname"
	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
	"github.com/meshext/meshext/e2e/testpki"
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

// BenchmarkBuildReload is model.Build as `meshext run` calls it on a reload
// after a one-service edit: meshext-cpbench's services (TLS with an inline
// CA, two HostnameGenerators), the unchanged services the same parsed
// objects as at the last Build, the edited one parsed anew (a new endpoint
// port), with the pipeline's memos and claims.
func BenchmarkBuildReload(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("mes=%d", n), func(b *testing.B) {
			ca, err := testpki.NewCA()
			if err != nil {
				b.Fatal(err)
			}
			caB64 := base64.StdEncoding.EncodeToString(ca.CertPEM)
			parse := func(doc string) []resource.Object {
				objs, errs := resource.ParseBytes("bench.yaml", []byte(doc))
				if len(errs) > 0 {
					b.Fatal(errs)
				}
				return objs
			}
			var all strings.Builder
			all.WriteString(cpworkload.HostnameGenerators())
			for i := 0; i < n; i++ {
				all.WriteString("---\n" + cpworkload.MES(i, 10000+i, caB64))
			}
			objs := parse(all.String())
			alloc, err := ipam.Open(b.TempDir(), "")
			if err != nil {
				b.Fatal(err)
			}
			var (
				claims      names.Claims
				validations validate.Memo
				hostnames   hostname.Memo
				memo        Memo
			)
			build := func() *World {
				set := &resource.Set{}
				for _, o := range objs {
					if fe := set.Add(o); fe != nil {
						b.Fatal(fe)
					}
				}
				set.ComputeLabels(resource.Options{})
				return Build(set, Options{IPAM: alloc, Claims: &claims, Validations: &validations, Hostnames: &hostnames, Memo: &memo})
			}
			if w := build(); len(w.Services) != n || len(w.Problems) > 0 {
				b.Fatalf("%d services, problems %v", len(w.Services), w.Problems)
			}
			var nanos int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				objs[len(objs)-n] = parse(cpworkload.MES(0, 1000+i%1000, caB64))[0] // service 0, edited
				set := &resource.Set{}
				for _, o := range objs {
					_ = set.Add(o)
				}
				set.ComputeLabels(resource.Options{})
				b.StartTimer()
				start := time.Now()
				Build(set, Options{IPAM: alloc, Claims: &claims, Validations: &validations, Hostnames: &hostnames, Memo: &memo})
				nanos += time.Since(start).Nanoseconds()
			}
			b.ReportMetric(float64(nanos)/float64(b.N)/1e6, "build-ms/op")
		})
	}
}

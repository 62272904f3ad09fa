package hostname

import (
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

// FuzzTemplate parses, validates and renders arbitrary HostnameGenerator
// templates (stub data, then real data with labels) and checks that nothing
// panics, no rendering exceeds the budget, a template that renders with stub
// data passes validation, and one round allocates a bounded amount however
// the template tries to build big values. `make fuzz` runs it for a bounded
// time; `go test` runs the seeds.
func FuzzTemplate(f *testing.F) {
	for _, seed := range []string{
		// What Kuma users write.
		"{{ .DisplayName }}.svc.meshext.local",
		"{{ .Name }}.{{ .Namespace }}.{{ .Zone }}.{{ .Mesh }}.mesh",
		`{{ label "k8s.kuma.io/service-name" }}.{{ .Namespace }}.svc.mesh.local`,
		"{{ if .Namespace }}{{ .Name }}.{{ .Namespace }}{{ else }}{{ .Name }}{{ end }}.mzsvc.mesh.local",
		`{{ .Name | lower | replace "_" "-" | trimSuffix "-x" | trimPrefix "x-" | upper }}.{{ with .Zone }}{{ . }}{{ end }}`,
		`{{ if and (eq .Mesh "default") (not (ne .Zone "")) }}{{ or .Namespace "none" }}{{ end }}.local`,
		// The blow-ups of issue 12, and their cousins.
		`{{ $x := printf "%s%s%s%s" .Name .Name .Name .Name }}` + strings.Repeat(`{{ $x = printf "%s%s" $x $x }}`, 30) + `{{ .Name }}.mesh`,
		`{{ printf "%0999999d" 1 }}.mesh`,
		`{{ replace "a" "aaaaaaaaaaaaaaaa" (replace "a" "aaaaaaaaaaaaaaaa" (replace "a" "aaaaaaaaaaaaaaaa" (replace "a" "aaaaaaaaaaaaaaaa" "aaaa"))) }}`,
		`{{ replace "" "xxxxxxxx" (label "big") }}`,
		"{{ range 1000000000 }}{{ end }}{{ .Name }}.mesh",
		`{{ define "a" }}{{ template "a" }}{{ template "a" }}{{ end }}{{ template "a" }}`,
		`{{ block "b" . }}{{ . }}{{ end }}`,
		`{{ . }}{{ $ }}{{ $.Name }}`,
		`{{ (.Name).Foo }}{{ nil }}{{ index .Name 0 }}{{ slice .Name 0 }}{{ len .Name }}`,
		strings.Repeat("(", 300) + ".Name" + strings.Repeat(")", 300),
		strings.Repeat("{{ if true }}", 200) + "x" + strings.Repeat("{{ end }}", 200),
		"{{ .Name[4 }}.mesh",
	} {
		f.Add(seed)
	}
	labels := map[string]string{"team": "payments", "big": strings.Repeat("b", 100_000), "k8s.kuma.io/service-name": "api"}
	realData := Data{Name: "svc_1", DisplayName: "Svc", Namespace: "kuma-system", Mesh: "default", Zone: "zone-1", Labels: labels}
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocs := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}

	f.Fuzz(func(t *testing.T, text string) {
		before := allocs()

		g := &resource.HostnameGenerator{Meta: resource.Meta{Kind: resource.KindHostnameGenerator, Name: "g", Mesh: "default"}}
		g.Spec.Template = text
		g.Spec.Selector.MeshExternalService = &resource.LabelSelector{}
		rejected := false
		for _, p := range validate.Object(g, nil) {
			if p.Field == "spec.template" {
				rejected = true
				if p.Message == "" {
					t.Fatal("problem without a message")
				}
			}
		}

		stub, stubErr := Render(text, StubData())
		if stubErr == nil && rejected {
			t.Fatalf("template renders %q with stub data, yet validation rejects it", stub)
		}
		if stubErr == nil && len(stub) > validate.TemplateBudget {
			t.Fatalf("rendering of %d bytes exceeds the budget", len(stub))
		}
		if c, err := compile(text); err == nil {
			if h, err := c.render(realData); err == nil && len(h) > 253 {
				t.Fatalf("hostname of %d bytes passed the DNS check", len(h))
			}
		} else if stubErr == nil {
			t.Fatalf("Render succeeded but compile failed: %v", err)
		}

		// Parsing a template of at most 4 KiB and rendering it within a
		// 1 KiB budget cost well under 16 MiB; a blow-up costs far more.
		if n := allocs() - before; n > 16<<20 {
			t.Fatalf("one round allocated %d bytes", n)
		}
	})
}

package validate_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

// doubling builds a template whose variable doubles n times and prints
// nothing: the output cap alone never sees the blow-up.
func doubling(n int) string {
	var b strings.Builder
	b.WriteString(`{{ $x := printf "%s%s%s%s" .Name .Name .Name .Name }}`)
	for i := 0; i < n; i++ {
		b.WriteString(`{{ $x = printf "%s%s" $x $x }}`)
	}
	b.WriteString(`{{ .Name }}.mesh`)
	return b.String()
}

// allocated is the bytes f allocates (heap, cumulative).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func hostnameGenerator(tmpl string) *resource.HostnameGenerator {
	g := &resource.HostnameGenerator{Meta: resource.Meta{Kind: resource.KindHostnameGenerator, Name: "g", Mesh: "default"}}
	g.Spec.Template = tmpl
	g.Spec.Selector.MeshExternalService = &resource.LabelSelector{}
	return g
}

// TestTemplateBlowUpIsRejectedCheaply: templates that build huge values
// (issue 12 item 4) are refused by validation, naming spec.template, and
// validating them allocates little.
func TestTemplateBlowUpIsRejectedCheaply(t *testing.T) {
	cases := map[string]string{
		"variable doubling":       doubling(22), // 4*4 bytes * 2^22 = 64 MiB before the fix
		"printf width":            `{{ printf "%0999999d" 1 }}{{ printf "%0999999d" 2 }}{{ .Name }}.mesh`,
		"nested replace":          `{{ replace "a" "aaaaaaaaaaaaaaaa" (replace "a" "aaaaaaaaaaaaaaaa" (replace "a" "aaaaaaaaaaaaaaaa" (replace "a" "aaaaaaaaaaaaaaaa" (replace "a" "aaaaaaaaaaaaaaaa" (replace "a" "aaaaaaaaaaaaaaaa" "aaaa"))))) | trimPrefix "a" | trimSuffix "x" | eq "" }}{{ .Name }}.mesh`,
		"range over a number":     `{{ range 100000000 }}{{ end }}{{ .Name }}.mesh`,
		"recursive template":      `{{ define "a" }}{{ template "a" }}{{ template "a" }}{{ end }}{{ .Name }}.mesh`,
		"long output":             strings.Repeat("a", 2000) + ".mesh",
		"printed struct via with": `{{ with $y := .Name }}{{ $y }}{{ end }}.mesh`,
	}
	for name, tmpl := range cases {
		t.Run(name, func(t *testing.T) {
			var errs []*resource.FieldError
			n := allocated(func() { errs = validate.Object(hostnameGenerator(tmpl), nil) })
			if assert.NotEmpty(t, errs, "template accepted") {
				assert.Equal(t, "spec.template", errs[0].Field)
				t.Logf("%s", errs[0].Message)
			}
			assert.Less(t, n, uint64(1<<20), "validation allocated %d bytes", n)
		})
	}
}

// TestTemplateLanguage pins what the restricted language accepts and how it
// renders: Kuma's templates, the string functions, conditions.
func TestTemplateLanguage(t *testing.T) {
	data := validate.TemplateData{Name: "web_1", DisplayName: "Web", Namespace: "kuma-system", Mesh: "default", Zone: "z1"}
	labels := map[string]string{"team": "payments", "app.kubernetes.io/name": "api"}
	label := func(k string) (string, error) {
		if v, ok := labels[k]; ok {
			return v, nil
		}
		return "", fmt.Errorf("label %s not found", k)
	}
	for tmpl, want := range map[string]string{
		// Kuma's own examples.
		`{{ .DisplayName }}.svc.meshext.local`:                                      "Web.svc.meshext.local",
		`{{ .Name }}.{{ .Namespace }}.{{ .Zone }}.mesh`:                             "web_1.kuma-system.z1.mesh",
		`{{ label "team" }}.{{ label "app.kubernetes.io/name" }}.mesh`:              "payments.api.mesh",
		`{{/* a comment */}}{{ $.Mesh }}.mesh`:                                      "default.mesh",
		`{{ .DisplayName | lower }}.{{ .Zone | upper }}`:                            "web.Z1",
		`{{ .Name | replace "_" "-" }}.mesh`:                                        "web-1.mesh",
		`{{ .Namespace | trimPrefix "kuma-" | trimSuffix "tem" }}.mesh`:             "sys.mesh",
		`{{ replace "" "-" "ab" }}`:                                                 "-a-b-",
		`{{ if eq .Namespace "" }}{{ .Name }}{{ else }}{{ .Namespace }}{{ end }}.x`: "kuma-system.x",
		`{{ if and .Zone (not (ne .Mesh "default")) }}in{{ end }}`:                  "in",
		`{{ with .Zone }}{{ . }}.{{ end }}{{ or .Namespace "none" }}`:               "z1.kuma-system",
		`{{ (label "team") }}-{{ 1 }}-{{ true }}`:                                   "payments-1-true",
	} {
		tp, err := validate.ParseTemplate(tmpl)
		if !assert.NoError(t, err, tmpl) {
			continue
		}
		got, err := tp.Render(data, label)
		assert.NoError(t, err, tmpl)
		assert.Equal(t, want, got, tmpl)
		// Rendering again gives the same result: the budget is per rendering.
		again, err := tp.Render(data, label)
		assert.NoError(t, err)
		assert.Equal(t, got, again)
	}

	tp, err := validate.ParseTemplate(`{{ label "missing" }}.mesh`)
	require.NoError(t, err)
	_, err = tp.Render(validate.TemplateData{}, nil)
	assert.ErrorContains(t, err, "label missing not found")
}

// TestTemplateRefusals: every construct outside the language is refused at
// parse time with a message saying what and where.
func TestTemplateRefusals(t *testing.T) {
	for tmpl, want := range map[string]string{
		`{{ range 5 }}x{{ end }}`:                                           "range is not supported in hostname templates",
		`{{ block "b" . }}x{{ end }}`:                                       "define and block actions are not supported",
		`{{ define "x" }}y{{ end }}{{ .Name }}`:                             "define and block actions are not supported",
		`{{ if true }}{{ with .Name }}{{ template "x" }}{{ end }}{{ end }}`: "a template call is not supported",
		`{{ $x := .Name }}{{ $x }}`:                                         ":1:3: a variable is not supported",
		`{{ with $x := .Name }}{{ $x }}{{ end }}`:                           "a variable is not supported",
		`{{ printf "%s" .Name }}`:                                           `:1:3: function "printf" is not allowed in hostname templates (allowed: label, lower, upper, trimPrefix, trimSuffix, replace, eq, ne, not, and, or)`,
		`{{ .Name | print }}`:                                               `function "print" is not allowed`,
		`{{ len .Name }}`:                                                   `function "len" is not allowed`,
		`{{ index .Name 0 }}`:                                               `function "index" is not allowed`,
		`{{ slice .Name 1 }}`:                                               `function "slice" is not allowed`,
		`{{ js .Name }}{{ html .Name }}{{ urlquery .Name }}`:                `function "js" is not allowed`,
		`{{ call .Name }}`:                                                  `function "call" is not allowed`,
		`{{ (.Name).Foo }}`:                                                 "a field of an expression is not supported",
		`{{ env "HOME" }}`:                                                  `function "env" not defined`,
		strings.Repeat("a", validate.MaxTemplateBytes+1):                    "must be at most 4096 bytes",
	} {
		_, err := validate.ParseTemplate(tmpl)
		assert.ErrorContains(t, err, want, tmpl)
	}
}

// TestTemplateBudget: output and function results together stop at
// TemplateBudget, before the bytes are built.
func TestTemplateBudget(t *testing.T) {
	big := strings.Repeat("x", 2*validate.TemplateBudget)
	for _, tmpl := range []string{
		strings.Repeat("a", validate.TemplateBudget+1),
		`{{ .Name }}`,
		`{{ .Name | lower | eq "" }}`,
		`{{ replace "a" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" | eq "" }}`,
		strings.Repeat(`{{ upper "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" | eq "" }}`, 20),
	} {
		tp, err := validate.ParseTemplate(tmpl)
		require.NoError(t, err)
		var out string
		n := allocated(func() { out, err = tp.Render(validate.TemplateData{Name: big}, nil) })
		assert.ErrorIs(t, err, validate.ErrTemplateBudget, tmpl)
		assert.Empty(t, out)
		assert.Less(t, n, uint64(16*validate.TemplateBudget), "rendering %.40q allocated %d bytes", tmpl, n)
	}
	// Exactly the budget is fine.
	tp, err := validate.ParseTemplate(strings.Repeat("a", validate.TemplateBudget))
	require.NoError(t, err)
	out, err := tp.Render(validate.TemplateData{}, nil)
	assert.NoError(t, err)
	assert.Len(t, out, validate.TemplateBudget)
}

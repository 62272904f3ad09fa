package validate_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
	"github.com/meshext/meshext/e2e/testenv"
)

// FuzzParseValidate feeds arbitrary bytes through the parser and the
// validator (as `meshext validate` and the run loop do) and checks that
// nothing panics and that every problem is well formed. `make fuzz` runs it
// for a bounded time; `go test` runs the seeds.
func FuzzParseValidate(f *testing.F) {
	for _, data := range testenv.ReadFiles(f, filepath.Join("..", "..", "examples", "*.yaml"), filepath.Join("testdata", "*.input.yaml")) {
		f.Add(data)
	}
	f.Add([]byte("type: MeshExternalService\nname: x\nspec: {match: {port: 80}, endpoints: [{address: 'unix://'}]}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("type: Dataplane\nname: \"web/1\"\nmesh: \"a\\0b\"\nnetworking: {address: 127.0.0.1}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		const file = "fuzz.yaml"
		objs, perrs := resource.ParseBytes(file, data)
		set := &resource.Set{Files: []string{file}}
		for _, o := range objs {
			if e := set.Add(o); e != nil {
				perrs = append(perrs, e)
			}
		}
		set.ComputeLabels(resource.Options{Zone: "zone-1"})
		valid, problems := validate.WithOptions(set, validate.Options{Zone: "zone-1"})

		// An upper bound on the lines YAML sees: it also breaks lines at \r,
		// NEL and the Unicode line and paragraph separators.
		lines := 1
		for _, sep := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
			lines += bytes.Count(data, []byte(sep))
		}
		for _, p := range append(perrs, problems...) {
			if p.File != file {
				t.Fatalf("problem without its file: %#v", p)
			}
			if p.Message == "" {
				t.Fatalf("problem without a message: %#v", p)
			}
			if p.Line < 0 || p.Line > lines+1 {
				t.Fatalf("problem line %d outside the %d-line input: %s", p.Line, lines, p)
			}
			_ = p.Error()
		}
		for _, p := range problems {
			if p.Kind == "" || p.Field == "" {
				t.Fatalf("validation problem without kind or field: %#v", p)
			}
		}
		total, kept := len(set.Objects()), len(valid.Objects())
		if kept > total {
			t.Fatalf("valid set grew: %d of %d", kept, total)
		}
		if len(problems) == 0 {
			malformed := 0
			for _, o := range set.Objects() {
				if o.GetMeta().Malformed {
					malformed++
				}
			}
			if kept != total-malformed {
				t.Fatalf("no validation problems, yet %d of %d resources (%d malformed) were kept", kept, total, malformed)
			}
		}
		// What passes carries names controller/names can build on: no '/',
		// NUL, space, upper case or non-ASCII, and '_' only in a mesh.
		for _, o := range valid.Objects() {
			m := o.GetMeta()
			if strings.Trim(m.Name, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "" {
				t.Fatalf("valid %s with name %q", m.Kind, m.Name)
			}
			if m.Kind != resource.KindHostnameGenerator && strings.Trim(m.Mesh, "abcdefghijklmnopqrstuvwxyz0123456789-._") != "" {
				t.Fatalf("valid %s with mesh %q", m.Kind, m.Mesh)
			}
		}
		// Validating again gives the same answer: validation does not mutate.
		_, again := validate.WithOptions(set, validate.Options{Zone: "zone-1"})
		if len(again) != len(problems) {
			t.Fatalf("second validation found %d problems, first %d", len(again), len(problems))
		}
	})
}

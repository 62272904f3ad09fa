package hostname

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/resource"
)

var update = flag.Bool("update", false, "rewrite golden files")

func load(t *testing.T, file string) *resource.Set {
	t.Helper()
	set, errs, err := resource.Load([]string{file}, resource.Options{Zone: "zone-1"})
	if err != nil || len(errs) > 0 {
		t.Fatalf("load %s: %v %v", file, err, errs)
	}
	return set
}

// serials gives services without a creation time an explicit first-seen
// order, as model.Build does from the IPAM state.
var serials = map[string]uint64{"default/b-earlier": 1, "default/a-later": 2}

func age(s *resource.MeshExternalService) Age {
	if t := CreationTime(&s.Meta); !t.IsZero() {
		return Age{Time: t}
	}
	return Age{Serial: serials[Key(&s.Meta)]}
}

func format(res map[string]*Result) string {
	keys := make([]string, 0, len(res))
	for k := range res {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		r := res[k]
		fmt.Fprintf(&b, "%s hostnames=%v\n", k, r.Hostnames)
		for _, st := range r.Statuses {
			fmt.Fprintf(&b, "  %s: Generated=%v reason=%s", st.Generator, st.Generated, st.Reason)
			if st.Hostname != "" {
				fmt.Fprintf(&b, " hostname=%s", st.Hostname)
			}
			if st.Message != "" {
				fmt.Fprintf(&b, " message=%s", st.Message)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create)", err)
	}
	if got != string(want) {
		t.Fatalf("output differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestCollisionsGolden(t *testing.T) {
	set := load(t, "testdata/collisions.yaml")
	got := format(Generate(Input{Generators: set.HostnameGenerators, Services: set.MeshExternalServices, ServiceAge: age, Zone: "zone-1"}))
	golden(t, "collisions.golden", got)
}

// The outcome depends on priority and age only, never on input order.
func TestCollisionsIndependentOfInputOrder(t *testing.T) {
	set := load(t, "testdata/collisions.yaml")
	want := format(Generate(Input{Generators: set.HostnameGenerators, Services: set.MeshExternalServices, ServiceAge: age}))
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		gens := append([]*resource.HostnameGenerator(nil), set.HostnameGenerators...)
		svcs := append([]*resource.MeshExternalService(nil), set.MeshExternalServices...)
		r.Shuffle(len(gens), func(i, j int) { gens[i], gens[j] = gens[j], gens[i] })
		r.Shuffle(len(svcs), func(i, j int) { svcs[i], svcs[j] = svcs[j], svcs[i] })
		if got := format(Generate(Input{Generators: gens, Services: svcs, ServiceAge: age})); got != want {
			t.Fatalf("shuffle %d changed the result:\n%s\nwant\n%s", i, got, want)
		}
	}
}

func TestCollisionNamesWinner(t *testing.T) {
	set := load(t, "testdata/collisions.yaml")
	res := Generate(Input{Generators: set.HostnameGenerators, Services: set.MeshExternalServices, ServiceAge: age})
	cases := []struct{ loser, generator, winner string }{
		{"default/one", "a-global", "two"},        // generator priority: origin=zone first
		{"default/aa-new", "c-new", "zz-old"},     // older creation time wins over name order
		{"default/a-later", "c-new", "b-earlier"}, // first seen wins over name order
	}
	for _, c := range cases {
		var st *Status
		for i := range res[c.loser].Statuses {
			if res[c.loser].Statuses[i].Generator == c.generator {
				st = &res[c.loser].Statuses[i]
			}
		}
		if st == nil || st.Generated || st.Reason != ReasonCollision {
			t.Fatalf("%s/%s: want a Collision, got %+v", c.loser, c.generator, st)
		}
		loserName := c.loser[strings.IndexByte(c.loser, '/')+1:]
		if !strings.Contains(st.Message, "MeshExternalService: "+c.winner+" ") || strings.Contains(st.Message, ": "+loserName+" ") {
			t.Errorf("%s: message must name the winner %s, not the loser: %q", c.loser, c.winner, st.Message)
		}
	}
}

// A service added later without a creation time never takes a hostname
// from one seen earlier, whatever its name.
func TestNewServiceDoesNotSteal(t *testing.T) {
	set := load(t, "testdata/collisions.yaml")
	var svcs []*resource.MeshExternalService
	for _, s := range set.MeshExternalServices {
		if s.Name == "b-earlier" || s.Name == "a-later" {
			svcs = append(svcs, s)
		}
	}
	before := Generate(Input{Generators: set.HostnameGenerators, Services: svcs[1:2], ServiceAge: age}) // b-earlier alone
	after := Generate(Input{Generators: set.HostnameGenerators, Services: svcs, ServiceAge: age})
	if fmt.Sprint(before["default/b-earlier"].Hostnames) != fmt.Sprint(after["default/b-earlier"].Hostnames) {
		t.Fatalf("b-earlier lost hostnames: %v -> %v", before["default/b-earlier"].Hostnames, after["default/b-earlier"].Hostnames)
	}
}

// One DNS answers the whole zone, so a hostname is one service's even across
// meshes: the same template in two meshes must not give two VIPs one name.
func TestHostnameClaimedAcrossMeshes(t *testing.T) {
	dir := t.TempDir()
	doc := `type: HostnameGenerator
name: all
spec:
  selector: {meshExternalService: {matchLabels: {}}}
  template: '{{ .DisplayName }}.svc.test'
---
type: MeshExternalService
name: api
mesh: a
creationTime: "2026-01-01T00:00:00Z"
spec: {match: {port: 80, protocol: http}, endpoints: [{address: a.example, port: 80}]}
---
type: MeshExternalService
name: api
mesh: b
creationTime: "2026-02-01T00:00:00Z"
spec: {match: {port: 80, protocol: http}, endpoints: [{address: b.example, port: 80}]}
`
	if err := os.WriteFile(filepath.Join(dir, "x.yaml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	set := load(t, filepath.Join(dir, "x.yaml"))
	res := Generate(Input{Generators: set.HostnameGenerators, Services: set.MeshExternalServices})
	if got := res["a/api"].Hostnames; len(got) != 1 || got[0] != "api.svc.test" {
		t.Fatalf("the older service keeps the name: %v", got)
	}
	st := res["b/api"].Statuses
	if len(res["b/api"].Hostnames) != 0 || len(st) != 1 || st[0].Reason != ReasonCollision ||
		!strings.Contains(st[0].Message, "MeshExternalService: api in mesh a ") {
		t.Fatalf("the newer service in another mesh must get a Collision naming the winner's mesh: %+v", res["b/api"])
	}
}

package hostname

import (
	"slices"
	"testing"

	"github.com/meshext/meshext/controller/resource"
)

// TestMemoGeneratesWhatAFreshGenerateDoes: through a Memo, Generate gives
// what it gives without one after each edit: a service replaced by an
// edited copy (a re-parse makes a new object), a changed template, another
// zone, a service dropped and back; and the memo holds the last call only.
func TestMemoGeneratesWhatAFreshGenerateDoes(t *testing.T) {
	set := load(t, "testdata/collisions.yaml")
	gens, svcs := set.HostnameGenerators, append([]*resource.MeshExternalService(nil), set.MeshExternalServices...)
	if len(gens) == 0 || len(svcs) < 2 {
		t.Fatalf("testdata has %d generators, %d services", len(gens), len(svcs))
	}
	renamed := *svcs[0]
	renamed.Meta.Name = "renamed"
	retemplated := *gens[0]
	retemplated.Spec.Template = "{{ .Name }}.other.{{ .Zone }}"
	// A service without a kuma.io/zone label gets the local zone in .Zone.
	zoneless := *svcs[1]
	zoneless.Labels = map[string]string{}
	for k, v := range svcs[1].Labels {
		if k != resource.LabelZone {
			zoneless.Labels[k] = v
		}
	}
	zoneSvcs := append([]*resource.MeshExternalService{&zoneless}, svcs[2:]...)
	// A generator of every service, rendering .Zone.
	everyone := retemplated
	everyone.Meta.Name = "everyone"
	everyone.Spec.Selector.MeshExternalService = &resource.LabelSelector{}
	zoneGens := append([]*resource.HostnameGenerator{&everyone}, gens[1:]...)
	var m Memo
	for i, step := range []struct {
		gens []*resource.HostnameGenerator
		svcs []*resource.MeshExternalService
		zone string
	}{
		{gens, svcs, "zone-1"},
		{gens, svcs, "zone-1"},
		{gens, append([]*resource.MeshExternalService{&renamed}, svcs[1:]...), "zone-1"},
		{append([]*resource.HostnameGenerator{&retemplated}, gens[1:]...), svcs, "zone-1"},
		{zoneGens, zoneSvcs, "zone-1"},
		{zoneGens, zoneSvcs, "zone-2"},
		{gens, svcs[1:], "zone-2"},
		{gens, svcs, "zone-2"},
	} {
		want := format(Generate(Input{Generators: step.gens, Services: step.svcs, ServiceAge: age, Zone: step.zone}))
		got := format(Generate(Input{Generators: step.gens, Services: step.svcs, ServiceAge: age, Zone: step.zone, Memo: &m}))
		if got != want {
			t.Errorf("step %d: with the memo\n%s\nwant\n%s", i, got, want)
		}
		for k := range m.services {
			found := false
			for _, s := range step.svcs {
				found = found || s == k
			}
			if !found {
				t.Errorf("step %d: memo holds a service of an earlier call", i)
			}
		}
	}
}

// TestMemoKeepsUnchangedResults: through a Memo, a service whose statuses
// did not change gets the same *Result (model.Memo keys its reuse on it),
// and one whose statuses changed a new one.
func TestMemoKeepsUnchangedResults(t *testing.T) {
	set := load(t, "testdata/collisions.yaml")
	gens, svcs := set.HostnameGenerators, set.MeshExternalServices
	var m Memo
	in := Input{Generators: gens, Services: svcs, ServiceAge: age, Zone: "zone-1", Memo: &m}
	first, again := GenerateEach(in), GenerateEach(in)
	for i := range svcs {
		if first[i] != again[i] {
			t.Errorf("%s: a new Result for the same statuses", svcs[i].Name)
		}
	}
	retemplated := *gens[0]
	retemplated.Spec.Template = "{{ .Name }}.other.{{ .Zone }}"
	in.Generators = append([]*resource.HostnameGenerator{&retemplated}, gens[1:]...)
	changed := GenerateEach(in)
	n := 0
	for i := range svcs {
		if !slices.Equal(changed[i].Statuses, again[i].Statuses) {
			n++
			if changed[i] == again[i] {
				t.Errorf("%s: the same Result for other statuses", svcs[i].Name)
			}
		}
	}
	if n == 0 {
		t.Fatal("the template change changed no status")
	}
}

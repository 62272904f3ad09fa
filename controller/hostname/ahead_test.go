package hostname

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/meshext/meshext/controller/resource"
)

// Rendering ahead on every core gives what rendering in claim order gives:
// the same hostnames, collisions and template errors, with or without a memo.
func TestRenderAheadSameAsInOrder(t *testing.T) {
	svcs := zoneServices(1500)
	for i, s := range svcs {
		if i%7 == 0 {
			s.Labels["team"] = "t" + fmt.Sprint(i%3)
		}
	}
	gen := zoneGenerator
	gens := []*resource.HostnameGenerator{
		gen("a", "{{ .DisplayName }}.a.local"), // every second one collides
		gen("b", "{{ .Name }}.b.local"),        // all distinct
		gen("c", `{{ label "team" }}.c.local`), // mostly a missing label, else collisions
		gen("d", "{{ .Name | bad }}.d.local"),  // does not compile
	}
	run := func(min int, memo *Memo) []*Result {
		old := renderAheadMin
		renderAheadMin = min
		defer func() { renderAheadMin = old }()
		return GenerateEach(Input{Generators: gens, Services: svcs, Zone: "z", Memo: memo})
	}
	inOrder := run(1<<30, nil)
	for _, memo := range []*Memo{nil, {}} {
		ahead := run(1, memo)
		if !reflect.DeepEqual(ahead, inOrder) {
			t.Fatalf("memo %v: rendered ahead differs from in order", memo != nil)
		}
	}
	generated, collided, failed := 0, 0, 0
	for _, r := range inOrder {
		for _, st := range r.Statuses {
			switch st.Reason {
			case ReasonGenerated:
				generated++
			case ReasonCollision:
				collided++
			case ReasonTemplateError:
				failed++
			}
		}
	}
	if generated == 0 || collided == 0 || failed == 0 {
		t.Fatalf("the input should exercise every outcome: %d generated, %d collisions, %d template errors", generated, collided, failed)
	}
}

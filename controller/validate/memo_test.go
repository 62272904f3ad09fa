package validate

import (
	"strconv"
	"testing"

	"github.com/meshext/meshext/controller/resource"
)

// TestMemoChecksWhatIsNew: through a Memo, a resource already checked keeps
// its verdict, an edited one (a new object, as a re-parse makes) is checked
// again, and other Options check everything again: the results always equal
// the memo-less WithOptions.
func TestMemoChecksWhatIsNew(t *testing.T) {
	parse := func(src string) *resource.Set {
		t.Helper()
		objs, errs := resource.ParseBytes("m.yaml", []byte(src))
		if len(errs) != 0 {
			t.Fatal(errs)
		}
		set := &resource.Set{}
		for _, o := range objs {
			if fe := set.Add(o); fe != nil {
				t.Fatal(fe)
			}
		}
		set.ComputeLabels(resource.Options{})
		return set
	}
	mes := func(name string, port int) string {
		return "type: MeshExternalService\nname: " + name + "\nmesh: default\nlabels: {kuma.io/zone: east}\nspec:\n  match: {type: HostnameGenerator, port: 80, protocol: tcp}\n  endpoints: [{address: 10.0.0.1, port: " + strconv.Itoa(port) + "}]\n"
	}
	good := parse(mes("a", 80))
	bad := parse(mes("a", 0))
	var m Memo
	for i, c := range []struct {
		set     *resource.Set
		opts    Options
		invalid bool
	}{
		{good, Options{}, false},
		{good, Options{}, false},
		{bad, Options{}, true},
		{good, Options{}, false},
		{good, Options{Zone: "west"}, true}, // the zone label names another zone
		{good, Options{}, false},
	} {
		valid, problems := m.WithOptions(c.set, c.opts)
		wantValid, wantProblems := WithOptions(c.set, c.opts)
		if len(problems) != len(wantProblems) || len(valid.Objects()) != len(wantValid.Objects()) {
			t.Fatalf("step %d: memo gave %d valid, %v; want %d valid, %v", i, len(valid.Objects()), problems, len(wantValid.Objects()), wantProblems)
		}
		if (len(problems) > 0) != c.invalid {
			t.Errorf("step %d: problems %v, want invalid=%v", i, problems, c.invalid)
		}
	}
	if len(m.last) != 1 {
		t.Errorf("memo holds %d resources, want the last call's 1", len(m.last))
	}
}

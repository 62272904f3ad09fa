package render

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/model"
)

// renderBoth renders a world built by build on one goroutine, then with
// every per-service step spread over goroutines (parallelMin 1, at least
// two procs), with and without a Memo (rendered twice, so the second
// reuses), and wants the same snapshot each time.
func renderBoth(t *testing.T, build func() *model.World, opts Options) {
	t.Helper()
	min := parallelMin
	procs := runtime.GOMAXPROCS(max(4, runtime.GOMAXPROCS(0)))
	t.Cleanup(func() { parallelMin = min; runtime.GOMAXPROCS(procs) })

	parallelMin = math.MaxInt
	w := build()
	want := snapshot(t, w, mustRender(t, w, opts))
	serialMemo := &Memo{}
	for range 2 {
		w := build()
		if _, err := serialMemo.Render(w, opts); err != nil {
			t.Fatal(err)
		}
	}

	parallelMin = 1
	w = build()
	if got := snapshot(t, w, mustRender(t, w, opts)); !bytes.Equal(got, want) {
		t.Fatalf("parallel render differs from serial: %s", firstDiff(want, got))
	}
	m := &Memo{}
	for i := range 2 {
		w := build()
		out, err := m.Render(w, opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := snapshot(t, w, out); !bytes.Equal(got, want) {
			t.Fatalf("parallel render %d with a memo differs from serial: %s", i+1, firstDiff(want, got))
		}
	}
	if a, b := memoKeys(serialMemo), memoKeys(m); !slices.Equal(a, b) {
		t.Errorf("memo keeps %q in parallel, %q serially", b, a)
	}
}

// memoKeys is what m kept, by name.
func memoKeys(m *Memo) []string {
	var out []string
	for k := range m.services {
		out = append(out, "service "+k)
	}
	for k := range m.variants {
		out = append(out, "variant "+k.base.Name+" "+k.settings)
	}
	for k, e := range m.filters {
		out = append(out, fmt.Sprintf("filters %s %s by input %t", k.node, k.cluster, e.byInput))
	}
	slices.Sort(out)
	return out
}

// TestParallelRenderIsSerialRender renders every golden world both ways:
// policies of each kind (routes to other services, access logs and notes
// among them), route tables through RDS, authorization, egresses.
func TestParallelRenderIsSerialRender(t *testing.T) {
	for _, c := range slices.Concat(goldenCases, authzGoldenCases) {
		t.Run(c.name, func(t *testing.T) { renderBoth(t, c.world, c.opts) })
	}
	for _, input := range policyCases(t) {
		name := strings.TrimSuffix(filepath.Base(input), ".input.yaml")
		build := func() *model.World { return buildPolicyCase(t, input) }
		t.Run(name, func(t *testing.T) { renderBoth(t, build, Options{AccessLogFIFODir: policyFIFODir}) })
		t.Run(name+"/routes-ads", func(t *testing.T) {
			renderBoth(t, build, Options{AccessLogFIFODir: policyFIFODir, RoutesVia: RoutesADS})
		})
	}
	t.Run("egress-policies", func(t *testing.T) {
		renderBoth(t, func() *model.World { return egressPoliciesWorld(t, false) }, Options{Plugin: PluginOff})
	})
}

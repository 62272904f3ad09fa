package render

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/e2e/testenv"
)

// policyFIFODir is the access-log FIFO directory of the policy goldens.
const policyFIFODir = "/run/meshext/access-log"

// buildPolicyCase loads testdata/policies/<name>.input.yaml as `meshext
// render` does; a first line "# skip-defaults: A,B" leaves those default
// policies out ("*" = all), so each case shows its own kind.
func buildPolicyCase(t testing.TB, input string) *model.World {
	t.Helper()
	data, err := os.ReadFile(input)
	if err != nil {
		t.Fatal(err)
	}
	var skip []string
	if first, _, _ := strings.Cut(string(data), "\n"); strings.HasPrefix(first, "# skip-defaults: ") {
		skip = strings.Split(strings.TrimPrefix(first, "# skip-defaults: "), ",")
	}
	set, problems, err := resource.Load([]string{input}, resource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("load problem: %v", p)
	}
	w := model.Build(set, model.Options{SystemCAPath: systemCAPath, SkipDefaultPolicies: skip})
	for _, p := range w.Problems {
		t.Errorf("build problem: %v", p)
	}
	return w
}

func policyCases(t testing.TB) []string {
	t.Helper()
	inputs, err := filepath.Glob(filepath.Join("testdata", "policies", "*.input.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no policy cases: %v", err)
	}
	return inputs
}

// TestGoldenPolicies renders each policy case (one per kind, merges by
// specificity and ties, Kuma's defaults, routes and authorization) into
// testdata/policies/<name>.golden.json.
func TestGoldenPolicies(t *testing.T) {
	for _, input := range policyCases(t) {
		name := strings.TrimSuffix(filepath.Base(input), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			w := buildPolicyCase(t, input)
			out := mustRender(t, w, Options{AccessLogFIFODir: policyFIFODir})
			golden(t, filepath.Join("testdata", "policies", name+".golden.json"), snapshot(t, w, out))
		})
	}
}

// TestEnvoyValidatesPolicies: every policy case is config a real Envoy
// accepts (retry_on names, CEL filters, health checkers, weighted
// clusters... are checked by Envoy itself, not only by PGV).
func TestEnvoyValidatesPolicies(t *testing.T) {
	envoy := testenv.Envoy(t)
	for _, input := range policyCases(t) {
		name := strings.TrimSuffix(filepath.Base(input), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := buildPolicyCase(t, input)
			envoyValidate(t, envoy, mustRender(t, w, Options{AccessLogFIFODir: t.TempDir()}))
		})
	}
}

// TestEveryExamplePolicyShapesTheConfig: each file of examples/policies
// (one per kind), added alone to the seed's examples, changes the rendered
// config, and the result is one a real Envoy accepts.
func TestEveryExamplePolicyShapesTheConfig(t *testing.T) {
	dir := examplesDir(t)
	var seed []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") {
			seed = append(seed, filepath.Join(dir, e.Name()))
		}
	}
	policies, err := filepath.Glob(filepath.Join(dir, "policies", "*.yaml"))
	if err != nil || len(policies) != len(resource.PolicyKinds) {
		t.Fatalf("want one example per policy kind, got %v (%v)", policies, err)
	}
	base := buildExamples(t, seed...)
	without := snapshot(t, base, mustRender(t, base, Options{}))
	envoy := testenv.Envoy(t)
	for _, p := range policies {
		t.Run(filepath.Base(p), func(t *testing.T) {
			w := buildExamples(t, append(append([]string{}, seed...), p)...)
			out := mustRender(t, w, Options{})
			if len(out.Warnings) > 0 {
				t.Errorf("warnings: %v", out.Warnings)
			}
			if with := snapshot(t, w, out); bytes.Equal(with, without) {
				t.Fatalf("%s leaves the rendered config unchanged", p)
			}
			envoyValidate(t, envoy, out)
		})
	}
}

// Without a relay FIFO directory, Tcp access-log backends are left out
// with a warning (Envoy would block opening a FIFO nobody reads), and the
// node asks for no FIFO.
func TestTCPAccessLogWithoutRelayIsLeftOut(t *testing.T) {
	w := buildPolicyCase(t, filepath.Join("testdata", "policies", "meshaccesslog.input.yaml"))
	out := mustRender(t, w, Options{})
	n := out.Nodes["default.web"]
	if n == nil || n.AccessLogFIFO != "" {
		t.Fatalf("node %v: want no FIFO", n)
	}
	found := 0
	for _, warn := range out.Warnings {
		if strings.Contains(warn, "Tcp backend") && strings.Contains(warn, "no access-log relay") {
			found++
		}
	}
	if found == 0 {
		t.Fatalf("no warning about the Tcp backends: %v", out.Warnings)
	}
	with := mustRender(t, buildPolicyCase(t, filepath.Join("testdata", "policies", "meshaccesslog.input.yaml")), Options{AccessLogFIFODir: policyFIFODir})
	if got, want := with.Nodes["default.web"].AccessLogFIFO, AccessLogFIFO(policyFIFODir, "default.web"); got != want {
		t.Fatalf("FIFO %q, want %q", got, want)
	}
}

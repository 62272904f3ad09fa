package policy_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.txt from the current output (review the diff before committing)")

// resolve loads one input as `meshext inspect` does and prints, for every
// proxy and every MeshExternalService it reaches, each effective value and
// the policy that set it. A first line "# skip-defaults: A,B" passes
// Options.SkipDefaults.
func resolve(t *testing.T, input string) string {
	t.Helper()
	data, err := os.ReadFile(input)
	require.NoError(t, err)
	var opts policy.Options
	if first, _, _ := strings.Cut(string(data), "\n"); strings.HasPrefix(first, "# skip-defaults: ") {
		opts.SkipDefaults = strings.Split(strings.TrimPrefix(first, "# skip-defaults: "), ",")
	}
	set, loadErrs, err := resource.Load([]string{input}, resource.Options{Zone: "zone-1"})
	require.NoError(t, err)
	require.Empty(t, loadErrs)
	valid, problems := validate.WithOptions(set, validate.Options{Zone: "zone-1"})
	for _, p := range problems {
		t.Errorf("input does not validate: %s", p)
	}
	opts.Zone = "zone-1"
	r := policy.Resolve(valid, opts)
	var b strings.Builder
	for _, d := range r.Defaults() {
		fmt.Fprintf(&b, "implicit %s %s/%s\n", d.GetMeta().Kind, d.GetMeta().Mesh, d.GetMeta().Name)
	}
	// With mesh mTLS the workloads are ViaEgress and the ZoneEgresses
	// are proxies too.
	proxies := policy.Proxies(valid.Dataplanes)
	for i := range proxies {
		if dp := proxies[i].Dataplane; dp != nil && valid.Mesh(dp.Mesh).EnabledMTLSBackend() != nil {
			proxies[i].ViaEgress = true
		}
	}
	proxies = append(proxies, policy.EgressProxies(valid.ZoneEgresses)...)
	for _, p := range proxies {
		for _, mes := range valid.MeshExternalServices {
			eff := r.For(p, mes)
			if eff == nil {
				continue
			}
			fmt.Fprintf(&b, "\nproxy %s -> MeshExternalService %s/%s\n", p.ID, mes.Mesh, mes.Name)
			eff.Write(&b, "  ")
		}
	}
	return b.String()
}

// TestGolden runs every testdata/<case>.input.yaml against <case>.golden.txt.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.input.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, inputs)
	for _, input := range inputs {
		name := strings.TrimSuffix(filepath.Base(input), ".input.yaml")
		t.Run(name, func(t *testing.T) {
			got := resolve(t, input)
			golden := filepath.Join("testdata", name+".golden.txt")
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "missing golden file; run go test ./controller/policy -run TestGolden -update")
			assert.Equal(t, string(want), got)
		})
	}
}

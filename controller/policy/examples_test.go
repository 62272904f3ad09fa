package policy_test

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

func loadValid(t *testing.T, paths ...string) *resource.Set {
	t.Helper()
	set, loadErrs, err := resource.Load(paths, resource.Options{})
	require.NoError(t, err)
	require.Empty(t, loadErrs)
	valid, problems := validate.Validate(set)
	require.Empty(t, problems)
	return valid
}

// TestExamplesTakeEffect: every policy in examples/policies sets at least
// one effective value for the seed's Dataplane, so each example's
// targetRefs really resolve (a misspelled service would set nothing).
func TestExamplesTakeEffect(t *testing.T) {
	valid := loadValid(t, filepath.Join("..", "..", "examples"))
	require.Len(t, valid.Policies, len(resource.PolicyKinds))
	r := policy.Resolve(valid, policy.Options{})
	setters := map[string]bool{}
	for _, p := range policy.Proxies(valid.Dataplanes) {
		for _, mes := range valid.MeshExternalServices {
			for _, o := range origins(r.For(p, mes)) {
				setters[string(o.Kind)+" "+o.Name] = true
			}
		}
	}
	for _, p := range valid.Policies {
		m := p.GetMeta()
		assert.True(t, setters[string(m.Kind)+" "+m.Name], "%s %s (%s) sets nothing", m.Kind, m.Name, m.Source.File)
		assert.True(t, strings.HasPrefix(m.Source.File, filepath.Join("..", "..", "examples", "policies")), m.Source.File)
	}
	for _, d := range r.Defaults() {
		assert.True(t, setters[string(d.GetMeta().Kind)+" "+d.GetMeta().Name], "default %s sets nothing", d.GetMeta().Name)
	}
}

func origins(e *policy.Effective) []policy.Origin {
	if e == nil {
		return nil
	}
	var out []policy.Origin
	add := func(c *policy.Conf) {
		for _, f := range c.Fields {
			out = append(out, f.Origin)
		}
	}
	for _, c := range e.Confs {
		add(c)
	}
	for _, r := range e.HTTPRules {
		out = append(out, r.Origin)
		for _, f := range r.Fields {
			out = append(out, f.Origin)
		}
	}
	for _, m := range e.RouteConfs {
		for _, c := range m {
			add(c)
		}
	}
	return out
}

// TestOrderDoesNotDependOnInput: the effective config is the same whatever
// order the policies were read in (Kuma's order is total but for to[]
// items of one policy, which keep theirs).
func TestOrderDoesNotDependOnInput(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.input.yaml"))
	require.NoError(t, err)
	for _, input := range inputs {
		valid := loadValid(t, input)
		want := describeAll(valid)
		rng := rand.New(rand.NewPCG(1, 2))
		for range 5 {
			rng.Shuffle(len(valid.Policies), func(i, j int) {
				valid.Policies[i], valid.Policies[j] = valid.Policies[j], valid.Policies[i]
			})
			assert.Equal(t, want, describeAll(valid), input)
		}
	}
}

func describeAll(valid *resource.Set) string {
	r := policy.Resolve(valid, policy.Options{})
	var b strings.Builder
	for _, p := range policy.Proxies(valid.Dataplanes) {
		for _, mes := range valid.MeshExternalServices {
			b.WriteString(p.ID + " " + mes.Name + "\n")
			r.For(p, mes).Write(&b, "")
		}
	}
	return b.String()
}

// TestForOtherMesh: a Dataplane never reaches another mesh's services.
func TestForOtherMesh(t *testing.T) {
	dp := &resource.Dataplane{Meta: resource.Meta{Kind: resource.KindDataplane, Mesh: "a", Name: "dp"}}
	mes := &resource.MeshExternalService{Meta: resource.Meta{Kind: resource.KindMeshExternalService, Mesh: "b", Name: "x"}}
	r := policy.Resolve(&resource.Set{MeshExternalServices: []*resource.MeshExternalService{mes}}, policy.Options{})
	assert.Nil(t, r.For(policy.Proxy{ID: "a.dp", Dataplane: dp}, mes))
	assert.Nil(t, r.For(policy.Proxy{ID: "a.dp", Dataplane: dp}, nil))
	eff := r.For(policy.Proxy{ID: policy.DefaultProxyID}, mes)
	require.NotNil(t, eff)
	assert.Equal(t, []string{"MeshTimeout", "MeshCircuitBreaker", "MeshRetry"}, kinds(eff), "the default node gets mesh b's defaults")
	assert.NotNil(t, policy.Resolve(nil, policy.Options{}))
}

func kinds(e *policy.Effective) []string {
	var out []string
	for _, k := range policy.ConfKinds {
		if e.Confs[k] != nil {
			out = append(out, string(k))
		}
	}
	return slices.Clip(out)
}

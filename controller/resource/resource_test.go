package resource

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadSeedExamples(t *testing.T) {
	set, errs, err := Load([]string{filepath.Join("..", "..", "examples")}, Options{})
	require.NoError(t, err)
	require.Empty(t, errs)
	require.Len(t, set.MeshExternalServices, 7)
	require.Len(t, set.HostnameGenerators, 1)
	require.Len(t, set.Dataplanes, 1)

	mtls := set.MeshExternalService("default", "mes-tcp-mtls")
	require.NotNil(t, mtls)
	assert.Equal(t, StyleKubernetes, mtls.Source.Style)
	assert.Equal(t, "kuma-system", mtls.Namespace)
	assert.Equal(t, "zone", mtls.Labels[LabelOrigin], "zone origin label is computed")
	assert.Equal(t, ModeSecured, mtls.Spec.TLS.Verification.Mode, "mode defaults to Secured")
	assert.Equal(t, TLSAuto, mtls.Spec.TLS.Version.Min)
	require.NotNil(t, mtls.Spec.TLS.Verification.ClientCert.Inline)

	dp := set.Dataplanes[0]
	assert.Equal(t, StyleUniversal, dp.Source.Style)
	assert.Equal(t, int64(9901), dp.Networking.Admin.Port)
	assert.Equal(t, "mes-http", dp.Networking.Outbound[0].BackendRef.Name)
	assert.Equal(t, 15, dp.LineOf("networking.outbound[0].backendRef"), "line of a nested universal field")
	assert.Equal(t, 11, mtls.LineOf("spec.match.port"))
}

func TestParseErrorsCarryFileLineAndPath(t *testing.T) {
	src := `type: MeshExternalService
name: bad
mesh: default
spec:
  match:
    port: notanumber
    protocl: tcp
  endpoints:
  - address: a.example
    port: 80
---
apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata:
  name: fine
spec:
  match: {port: 80}
`
	objs, errs := ParseBytes("x.yaml", []byte(src))
	var lines []string
	for _, e := range errs {
		lines = append(lines, e.Error())
	}
	all := strings.Join(lines, "\n")
	assert.Contains(t, all, "x.yaml:7: MeshExternalService default/bad: spec.match.protocl: unknown field")
	assert.Contains(t, all, "x.yaml:6: MeshExternalService default/bad: spec.match.port: cannot unmarshal !!str `notanumber` into int64")
	require.Len(t, objs, 2, "a bad document does not hide the good one")
	assert.Equal(t, ProtocolTCP, objs[1].(*MeshExternalService).Spec.Match.Protocol)
}

func TestSyntaxErrorHasLine(t *testing.T) {
	_, errs := ParseBytes("y.yaml", []byte("type: Mesh\nname: default\nrouting:\n  a: [\n"))
	require.Len(t, errs, 1)
	assert.Regexp(t, `^y\.yaml:\d+: invalid YAML`, errs[0].Error())
}

func TestSecretsBothStyles(t *testing.T) {
	src := `type: Secret
name: ca
mesh: default
data: aGVsbG8=
---
apiVersion: v1
kind: Secret
metadata:
  name: key
  namespace: kuma-system
  labels:
    kuma.io/mesh: default
type: system.kuma.io/secret
data:
  value: d29ybGQ=
`
	objs, errs := ParseBytes("s.yaml", []byte(src))
	require.Empty(t, errs)
	require.Len(t, objs, 2)
	assert.Equal(t, "hello", string(objs[0].(*Secret).Data))
	assert.Equal(t, "world", string(objs[1].(*Secret).Data))
	assert.NotContains(t, objs[1].(*Secret).String(), "world", "String never shows secret material")
}

// billionLaughs is a MeshExternalService whose extension config nests
// levels of aliases, each fan times the one before.
func billionLaughs(name string, levels, fan int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "type: MeshExternalService\nname: %s\nspec:\n  match: {port: 80}\n  endpoints: [{address: 1.1.1.1, port: 80}]\n"+
		"  extension:\n    type: x\n    config:\n      l0: &l0 [%s]\n", name, strings.TrimSuffix(strings.Repeat("lol,", fan), ","))
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "      l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d,", i-1), fan), ","))
	}
	return b.String()
}

// TestAliasExpansionIsBounded feeds "billion laughs" documents: one that
// would expand to 10^9 values is refused before decoding; many documents
// that each stay under the YAML decoder's own per-document limit are
// refused once the file's budget is spent, so what is decoded stays a small
// multiple of what is written; a self-referencing alias is refused.
func TestAliasExpansionIsBounded(t *testing.T) {
	_, errs := ParseBytes("b.yaml", []byte(billionLaughs("bomb", 9, 10)))
	require.Len(t, errs, 1)
	assert.Equal(t, "b.yaml:1: YAML aliases expand this document to 1234567933 values; a file may expand to at most 4 times the 133 it holds, plus 100000", errs[0].Error())

	var docs []string
	for i := range 200 {
		docs = append(docs, billionLaughs(fmt.Sprintf("m%d", i), 3, 10))
	}
	objs, errs := ParseBytes("many.yaml", []byte(strings.Join(docs, "---\n")))
	require.NotEmpty(t, errs)
	assert.Contains(t, errs[0].Error(), "YAML aliases expand this document to 1261 values")
	assert.Less(t, len(objs), 200, "the budget refuses documents once spent")
	var budget aliasBudget
	for _, o := range objs {
		root := o.GetMeta().src.root()
		require.Empty(t, budget.spend(root), "every accepted document fits the file's budget")
	}

	_, errs = ParseBytes("self.yaml", []byte("type: Mesh\nname: m\nrouting: &a {x: [*a]}\n"))
	require.NotEmpty(t, errs)
	assert.Contains(t, errs[0].Error(), "an alias refers to a node that contains it")
}

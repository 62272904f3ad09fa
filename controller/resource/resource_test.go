package resource

import (
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

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/meshext/meshext/controller/source/kube"
)

// TestCommittedCRDsAreGenerated: deploy/kubernetes/crds is exactly what
// crdgen writes from today's types and constraints.
func TestCommittedCRDsAreGenerated(t *testing.T) {
	files, err := Generate()
	require.NoError(t, err)
	require.Len(t, files, len(kube.Kinds))
	dir := filepath.Join("..", "crds")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, len(files), "no CRD file that crdgen does not write")
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, "run go run ./deploy/kubernetes/crdgen")
		assert.Equal(t, string(want), string(got), "%s differs from crdgen's output: run go run ./deploy/kubernetes/crdgen", name)
	}
}

// TestSchemasAreStructural: every node says its type (or keeps unknown
// fields, or is an int-or-string), as the API server requires of a CRD.
func TestSchemasAreStructural(t *testing.T) {
	for _, k := range kube.Kinds {
		var walk func(path string, s *Schema)
		walk = func(path string, s *Schema) {
			if s.Type == "" && !s.PreserveUnknown && !s.IntOrString {
				t.Errorf("%s %s: no type", k.Kind, path)
			}
			for _, r := range s.Required {
				if _, ok := s.Properties[r]; !ok {
					t.Errorf("%s %s: required %q is not a property", k.Kind, path, r)
				}
			}
			for name, p := range s.Properties {
				walk(path+"."+name, p)
			}
			if s.Items != nil {
				walk(path+"[]", s.Items)
			}
			if s.AdditionalProperties != nil {
				walk(path+"{}", s.AdditionalProperties)
			}
		}
		walk("", rootSchema(k))
	}
}

func TestMeshExternalServiceCRD(t *testing.T) {
	k, _ := kube.KindInfoOf("MeshExternalService")
	data, err := yaml.Marshal(CRD(k))
	require.NoError(t, err)
	var crd struct {
		Spec struct {
			Scope    string
			Versions []struct {
				Subresources             map[string]any
				AdditionalPrinterColumns []struct{ Name, JSONPath string }
			}
		}
	}
	require.NoError(t, yaml.Unmarshal(data, &crd))
	assert.Equal(t, "Namespaced", crd.Spec.Scope)
	assert.Contains(t, crd.Spec.Versions[0].Subresources, "status")
	var cols []string
	for _, c := range crd.Spec.Versions[0].AdditionalPrinterColumns {
		cols = append(cols, c.Name+"="+c.JSONPath)
	}
	assert.Equal(t, []string{"Hostname=.status.addresses[0].hostname", "VIP=.status.vip.ip", "Age=.metadata.creationTimestamp"}, cols)
	spec := rootSchema(k).Properties["spec"]
	assert.Equal(t, []string{"match"}, spec.Required)
	assert.Equal(t, []any{"tcp", "grpc", "http", "http2"}, spec.Properties["match"].Properties["protocol"].Enum)
	assert.Equal(t, int64(65535), *spec.Properties["endpoints"].Items.Properties["port"].Maximum)
}

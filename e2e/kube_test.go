package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/e2e/kubetest"
	"github.com/meshext/meshext/e2e/testenv"
)

// seedMeshExternalServices are the seed's MeshExternalService examples in
// examples/ (the seed's Kubernetes YAML, byte for byte).
var seedMeshExternalServices = []string{"mes-tcp", "mes-tcp-tls", "mes-tcp-mtls", "mes-http", "mes-https", "mes-grpc", "mes-grpcs"}

// TestKubernetesAppliesSeedMeshExternalServices: our CRD makes a real API
// server accept the seed's Kubernetes YAML unchanged, and `kubectl get`
// lists it with the Hostname and VIP columns read from the status
// subresource.
func TestKubernetesAppliesSeedMeshExternalServices(t *testing.T) {
	c := kubetest.Start(t)
	crd := filepath.Join(testenv.RepoRoot(), "deploy", "kubernetes", "crds", "kuma.io_meshexternalservices.yaml")
	c.MustKubectl(t, "apply", "-f", crd)
	c.MustKubectl(t, "wait", "--for=condition=Established", "crd/meshexternalservices.kuma.io", "--timeout=60s")
	c.MustKubectl(t, "create", "namespace", "kuma-system")

	for _, name := range seedMeshExternalServices {
		out := c.MustKubectl(t, "apply", "-f", filepath.Join(testenv.RepoRoot(), "examples", name+".yaml"))
		assert.Contains(t, out, "meshexternalservice.kuma.io/"+name+" created")
	}

	// The columns show what the controller writes to status; no controller
	// runs here, so write one status the way it will (status subresource).
	status := `{"status":{"vip":{"ip":"242.0.0.1"},"addresses":[{"hostname":"mes-tcp.svc.meshext.local","origin":"HostnameGenerator","hostnameGeneratorRef":{"coreName":"example"}}]}}`
	c.MustKubectl(t, "patch", "meshexternalservice", "mes-tcp", "-n", "kuma-system", "--subresource=status", "--type=merge", "-p", status)
	// The main resource ignores status: re-applying the seed's YAML keeps it.
	c.MustKubectl(t, "apply", "-f", filepath.Join(testenv.RepoRoot(), "examples", "mes-tcp.yaml"))

	out := c.MustKubectl(t, "get", "meshexternalservices", "-n", "kuma-system")
	rows := table(out)
	require.NotEmpty(t, rows, out)
	assert.Equal(t, []string{"NAME", "HOSTNAME", "VIP", "AGE"}, rows[0], out)
	byName := map[string][]string{}
	for _, r := range rows[1:] {
		byName[r[0]] = r
	}
	for _, name := range seedMeshExternalServices {
		require.Contains(t, byName, name, out)
	}
	assert.Equal(t, []string{"mes-tcp", "mes-tcp.svc.meshext.local", "242.0.0.1"}, byName["mes-tcp"][:3], out)
	assert.Equal(t, []string{"mes-http", "", ""}, byName["mes-http"][:3], "no status yet: "+out)

	// The seed's fields are stored as written (the mTLS example's inline key included).
	assert.Equal(t, "default", c.MustKubectl(t, "get", "extsvc", "mes-tcp-mtls", "-n", "kuma-system", "-o", `jsonpath={.metadata.labels.kuma\.io/mesh}`))
	assert.Equal(t, "tcpbin.com", c.MustKubectl(t, "get", "extsvc", "mes-tcp-mtls", "-n", "kuma-system", "-o", "jsonpath={.spec.tls.verification.serverName}"))
	key := c.MustKubectl(t, "get", "extsvc", "mes-tcp-mtls", "-n", "kuma-system", "-o", "jsonpath={.spec.tls.verification.clientKey.inline}")
	seed, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "examples", "mes-tcp-mtls.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(seed), "inline: "+key+"\n")
	assert.Greater(t, len(key), 1000)

	_, err = c.KubectlStdin(`apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata: {name: no-match, namespace: kuma-system}
spec:
  endpoints: [{address: example.com, port: 80}]
`, "apply", "-f", "-")
	require.Error(t, err, "a MeshExternalService without spec.match is refused")
	assert.Contains(t, err.Error(), "spec.match: Required value")
}

// table splits kubectl's column output at the header's column starts, so an
// empty cell stays an empty string.
func table(out string) [][]string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var starts []int
	for i, r := range lines[0] {
		if r != ' ' && (i == 0 || lines[0][i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	var rows [][]string
	for _, l := range lines {
		row := make([]string, len(starts))
		for j, s := range starts {
			end := len(l)
			if j+1 < len(starts) {
				end = min(starts[j+1], len(l))
			}
			if s < end {
				row[j] = strings.TrimSpace(l[s:end])
			}
		}
		rows = append(rows, row)
	}
	return rows
}

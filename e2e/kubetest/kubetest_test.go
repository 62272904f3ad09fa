package kubetest

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/bpf/bpftest"
)

// As root the cluster runs in a fresh network namespace with only loopback.
func TestMain(m *testing.M) { os.Exit(bpftest.Run(m)) }

// TestClusterServesAndStops: token authentication and RBAC are on, kubectl
// and the API server are the release `make k8s-tools` stamped, and Stop
// leaves no process and no listener behind.
func TestClusterServesAndStops(t *testing.T) {
	c := Start(t)

	code, _, err := c.Get("/api/v1/namespaces", c.Token)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code, "the admin token lists namespaces")
	code, _, err = c.Get("/api/v1/namespaces", "not-a-token")
	require.NoError(t, err)
	assert.Equal(t, http.StatusUnauthorized, code, "an unknown token is refused")
	code, _, err = c.Get("/api/v1/namespaces", "")
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, code, "anonymous may not list namespaces (RBAC)")

	assert.Equal(t, "yes", strings.TrimSpace(c.MustKubectl(t, "auth", "can-i", "create", "customresourcedefinitions.apiextensions.k8s.io")))

	var v struct {
		Client struct{ GitVersion string } `json:"clientVersion"`
		Server struct{ GitVersion string } `json:"serverVersion"`
	}
	require.NoError(t, json.Unmarshal([]byte(c.MustKubectl(t, "version", "-o", "json")), &v))
	stamp, err := os.ReadFile(filepath.Join(ToolsDir(), "VERSION"))
	require.NoError(t, err)
	want := strings.Fields(string(stamp))[1] // "k8s.io/kubernetes vX.Y.Z ..."
	assert.Equal(t, want, v.Client.GitVersion, "kubectl")
	assert.Equal(t, want, v.Server.GitVersion, "kube-apiserver")

	pids := c.Pids()
	require.Len(t, pids, 2)
	stopped := time.Now()
	c.Stop()
	t.Logf("stopped in %v", time.Since(stopped).Round(time.Millisecond))
	for _, pid := range pids {
		assert.True(t, errors.Is(syscall.Kill(pid, 0), syscall.ESRCH), "process %d is gone", pid)
	}
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(c.Server, "https://"), time.Second)
	if err == nil {
		conn.Close()
	}
	assert.Error(t, err, "nothing listens on the API server's port after Stop")
	c.Stop() // a second Stop is harmless (Start's cleanup calls it again)
}

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
)

// slowUpstream answers every request after delay, on loopback.
func slowUpstream(t *testing.T, delay time.Duration) int {
	t.Helper()
	return testnet.HTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay):
			fmt.Fprint(w, "slow answer")
		case <-r.Context().Done():
		}
	}))
}

// oneServiceDrop is a drop directory with MeshExternalService name (http,
// match port 80) on 127.0.0.1:port and Dataplane dp whose outbound
// listener for it is on out, plus extra.
func oneServiceDrop(t *testing.T, name string, port int, dp string, out int, extra string) string {
	t.Helper()
	drop := filepath.Join(t.TempDir(), "drop")
	require.NoError(t, os.MkdirAll(drop, 0o755))
	writeFile(t, filepath.Join(drop, "world.yaml"), fmt.Sprintf(`type: MeshExternalService
name: %s
mesh: default
spec:
  match: {port: 80, protocol: http}
  endpoints: [{address: 127.0.0.1, port: %d}]
---
type: Dataplane
mesh: default
name: %s
networking:
  address: 127.0.0.1
  transparentProxying: {redirectPortOutbound: %d}
  outbound:
    - port: %d
      backendRef: {kind: MeshExternalService, name: %s}
`, name, port, dp, testnet.FreePort(t), out, name)+extra)
	return drop
}

func meshTimeoutYAML(request string) string {
	return `type: MeshTimeout
name: slow-timeout
mesh: default
spec:
  to:
    - targetRef: {kind: MeshExternalService, name: slow}
      default:
        http: {requestTimeout: ` + request + `}
`
}

// routeTimeout is the timeout of the slow service's route in Envoy's
// /config_dump ("" when not there yet).
func (m *meshEnv) routeTimeout(t *testing.T) string {
	t.Helper()
	// Inline in a listener, or a route table of its own (RDS).
	listeners, err := m.envoy.ConfigDump("?resource=dynamic_listeners")
	require.NoError(t, err)
	routes, err := m.envoy.ConfigDump("?resource=dynamic_route_configs")
	require.NoError(t, err)
	dump := listeners + routes
	i := strings.Index(dump, `"cluster": "default_slow__default_extsvc_80"`)
	if i < 0 {
		return ""
	}
	// The route action lists cluster, then (alphabetically) idle_timeout... timeout.
	if mm := regexp.MustCompile(`"timeout": "([0-9.]+s)"`).FindStringSubmatch(dump[i:]); mm != nil {
		return mm[1]
	}
	return ""
}

// routeUpdates is how many listener and route table (RDS) updates Envoy
// accepted.
func (m *meshEnv) routeUpdates(t *testing.T) int {
	t.Helper()
	return m.counterSum(t, `^(listener_manager\.lds|http\..*\.rds\..*)\.update_success$`)
}

// TestPolicyChangeReachesRunningEnvoy: `meshext run` feeds a real Envoy; a
// MeshTimeout edit in the drop directory changes the route's timeout in
// the running Envoy (same process), and the requests show it: 504 after
// 1 s before, the slow answer after 2 s once the timeout is 5 s.
func TestPolicyChangeReachesRunningEnvoy(t *testing.T) {
	curl := testenv.Tool(t, "curl")
	up := slowUpstream(t, 2*time.Second)
	out := testnet.FreePort(t)
	drop := oneServiceDrop(t, "slow", up, "policy", out, "")
	writeFile(t, filepath.Join(drop, "timeout.yaml"), meshTimeoutYAML("1s"))
	m := startMesh(t, drop, meshOpts{nodeID: "default.policy"})
	addr := fmt.Sprintf("127.0.0.1:%d", out)
	m.waitListener(t, addr)
	pid := m.envoy.Pid()
	eventually(t, 20*time.Second, "route timeout 1s in /config_dump", func() error {
		if got := m.routeTimeout(t); got != "1s" {
			return fmt.Errorf("route timeout %q", got)
		}
		return nil
	})
	start := time.Now()
	code, body := curlCode(t, curl, "http://"+addr+"/")
	took := time.Since(start)
	require.Equal(t, 504, code, body)
	assert.Less(t, took, 1900*time.Millisecond, "504 at the 1 s timeout")

	updatesBefore := m.routeUpdates(t)
	writeFile(t, filepath.Join(drop, "timeout.yaml"), meshTimeoutYAML("5s"))
	eventually(t, 20*time.Second, "route timeout 5s in /config_dump", func() error {
		if got := m.routeTimeout(t); got != "5s" {
			return fmt.Errorf("route timeout %q", got)
		}
		return nil
	})
	start = time.Now()
	code, body = curlCode(t, curl, "http://"+addr+"/")
	took2 := time.Since(start)
	assert.Equal(t, 200, code, body)
	assert.Equal(t, "slow answer", body)
	assert.Equal(t, pid, m.envoy.Pid(), "the same Envoy process")
	assert.True(t, m.envoy.Alive())
	assert.Greater(t, m.routeUpdates(t), updatesBefore, "delivered as an LDS or RDS update")
	t.Logf("requestTimeout 1s: %d after %v; edited to 5s: %d after %v; Envoy pid %d throughout",
		504, took.Round(time.Millisecond), code, took2.Round(time.Millisecond), pid)
}

// TestMeshAccessLogTCPThroughMeshextRun: a MeshAccessLog Tcp backend
// through `meshext run`'s own relay (its FIFO under --state-dir): each
// request reaches the test's TCP sink as one line.
func TestMeshAccessLogTCPThroughMeshextRun(t *testing.T) {
	curl := testenv.Tool(t, "curl")
	up := slowUpstream(t, 0)
	sinkAddr, sinkLines := testnet.LineSink(t)
	out := testnet.FreePort(t)
	drop := oneServiceDrop(t, "logged", up, "logs", out, fmt.Sprintf(`---
type: MeshAccessLog
name: to-tcp
mesh: default
spec:
  to:
    - targetRef: {kind: Mesh}
      default:
        backends:
          - type: Tcp
            tcp:
              address: %q
              format: {type: Plain, plain: 'tcp-sink %%KUMA_SOURCE_SERVICE%% -> %%KUMA_DESTINATION_SERVICE%% %%REQ(:PATH)%% %%RESPONSE_CODE%%'}
`, sinkAddr))
	m := startMesh(t, drop, meshOpts{nodeID: "default.logs", noAccessLog: true})
	addr := fmt.Sprintf("127.0.0.1:%d", out)
	m.waitListener(t, addr)
	for i := range 3 {
		code, body := curlCode(t, curl, fmt.Sprintf("http://%s/req-%d", addr, i))
		require.Equal(t, 200, code, body)
	}
	eventually(t, 30*time.Second, "three lines at the TCP sink", func() error {
		lines := sinkLines()
		for i := range 3 {
			want := fmt.Sprintf("tcp-sink logs -> logged /req-%d 200", i)
			if !contains(lines, want) {
				return fmt.Errorf("no %q in %q", want, lines)
			}
		}
		return nil
	})
	_, err := os.Stat(filepath.Join(m.state, "access-log", "default.logs.fifo"))
	assert.NoError(t, err, "the FIFO lives in the state directory")
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testnet"
)

// egressPolicies are Kuma's policies for TestEgressPathLoopbackPolicies:
// on web's Envoy a MeshHTTPRoute on mes-http (x-backend: b to mes-http-b,
// /anything half and half) and a MeshRetry on mes-flaky that retries only
// upstream 409s and 503s (a status-only retryOn would keep Kuma's default
// connect-failure); on the egresses' upstream cluster of mes-http-b a
// MeshHealthCheck and a MeshCircuitBreaker.
const egressPolicies = `type: MeshHTTPRoute
name: http-to-b
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshExternalService, name: mes-http}
      rules:
        - matches:
            - path: {type: PathPrefix, value: /}
              headers: [{name: x-backend, value: b}]
          default:
            backendRefs: [{kind: MeshExternalService, name: mes-http-b}]
        - matches:
            - path: {type: PathPrefix, value: /anything}
          default:
            backendRefs:
              - {kind: MeshExternalService, name: mes-http, weight: 50}
              - {kind: MeshExternalService, name: mes-http-b, weight: 50}
---
type: MeshRetry
name: flaky-503
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshExternalService, name: mes-flaky}
      default:
        http:
          numRetries: 3
          retryOn: ["Retriable4xx", "503"]
          backOff: {baseInterval: 10ms, maxInterval: 20ms}
---
type: MeshHealthCheck
name: b-health
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshExternalService, name: mes-http-b}
      default:
        interval: 1s
        timeout: 1s
        unhealthyThreshold: 3
        healthyThreshold: 1
        http: {path: /health}
---
type: MeshCircuitBreaker
name: b-breaker
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: MeshExternalService, name: mes-http-b}
      default:
        connectionLimits: {maxConnections: 7, maxPendingRequests: 7}
`

// TestEgressPathLoopbackPolicies proves on loopback, through two egress
// Envoys, that Kuma's policies apply where the merged design puts them: a
// MeshHTTPRoute on the workload sends requests to another service through
// the egress (its own cluster and SNI), a MeshRetry on the workload turns
// two upstream 503s into a 200, a MeshHealthCheck and a MeshCircuitBreaker
// shape the egresses' upstream cluster and not the workload's cluster to
// the egresses, and with egress-1 killed the egress failover still
// retries connect failures although the MeshRetry does not ask for them.
func TestEgressPathLoopbackPolicies(t *testing.T) {
	e := startEgressEnv(t, "on", "file")
	web := e.envoys["default.web"]

	// Two more upstreams: mes-http-b says who it is; mes-flaky answers 503
	// twice, then 200.
	var bCalls, flakyCalls atomic.Int32
	bPort := testnet.HTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			bCalls.Add(1)
		}
		fmt.Fprint(w, "backend b")
	}))
	flakyPort := testnet.HTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if flakyCalls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "third time lucky")
	}))
	e.write(t, "services-more.yaml", fmt.Sprintf(`type: MeshExternalService
name: mes-http-b
mesh: default
spec:
  match: {type: HostnameGenerator, port: 80, protocol: http}
  endpoints: [{address: 127.0.0.1, port: %d}]
---
type: MeshExternalService
name: mes-flaky
mesh: default
spec:
  match: {type: HostnameGenerator, port: 80, protocol: http}
  endpoints: [{address: 127.0.0.1, port: %d}]
`, bPort, flakyPort))
	flakyOut := freeOn(t, "127.0.0.1")
	_, flakyOutPort, _ := net.SplitHostPort(flakyOut)
	e.write(t, "web.yaml", egressDataplane("web", e.out["web"], "")+
		"    - port: "+flakyOutPort+"\n      backendRef: {kind: MeshExternalService, name: mes-flaky}\n")
	e.write(t, "policies.yaml", egressPolicies)
	eventually(t, 30*time.Second, "web's outbound for mes-flaky", func() error {
		c, err := net.DialTimeout("tcp", flakyOut, time.Second)
		if err != nil {
			return fmt.Errorf("%v; meshext log: %s", err, envoyproc.Tail(e.run.LogPath, 1500))
		}
		return c.Close()
	})

	cluster := func(name string) string {
		return names.LegacyDestination("default", name, "", "default", names.ExtSvcShortName, 80)
	}
	// Both egresses serve the new services (their chain and upstream
	// cluster) before anything is counted.
	for _, eg := range []string{".egress-1", ".egress-2"} {
		for _, svc := range []string{"mes-http-b", "mes-flaky"} {
			eventually(t, 30*time.Second, eg+" serves "+svc, func() error {
				ls, err := e.envoys[eg].ConfigDump("?resource=dynamic_listeners")
				if err != nil || !strings.Contains(ls, names.SNI(svc, "default", "mes", 80)) {
					return fmt.Errorf("no chain for %s yet (%v)", svc, err)
				}
				if n, err := e.envoys[eg].StatInt(context.Background(), "cluster."+cluster(svc)+".membership_total"); err != nil || n == 0 {
					return fmt.Errorf("no cluster %s yet (%v)", cluster(svc), err)
				}
				return nil
			})
		}
	}
	fresh := func() *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	}
	getWith := func(url string, header ...string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		require.NoError(t, err)
		if len(header) == 2 {
			req.Header.Set(header[0], header[1])
		}
		resp, err := fresh().Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return 0, err.Error()
		}
		return resp.StatusCode, string(b)
	}
	httpOut := "http://" + e.out["web"]["mes-http"]

	t.Run("MeshHTTPRoute on the workload: a header and a split reach mes-http-b through the egress", func(t *testing.T) {
		eventually(t, 30*time.Second, "x-backend: b goes to mes-http-b", func() error {
			if code, body := getWith(httpOut+"/get", "x-backend", "b"); code != 200 || body != "backend b" {
				return fmt.Errorf("%d %q", code, body)
			}
			return nil
		})
		code, body := getWith(httpOut + "/get")
		require.Equal(t, 200, code, body)
		assert.Contains(t, body, `"url"`, "without the header: mes-http's httpbin")
		before := bCalls.Load()
		const n = 60
		toB := 0
		for i := range n {
			code, body := getWith(httpOut + "/anything/" + strconv.Itoa(i))
			require.Equal(t, 200, code, body)
			if body == "backend b" {
				toB++
			}
		}
		assert.Equal(t, int32(toB), bCalls.Load()-before, "every request that answered b reached b's upstream")
		assert.True(t, toB >= 10 && toB <= n-10, "a 50/50 split of %d requests sent %d to mes-http-b", n, toB)
		t.Logf("/anything: %d of %d requests to mes-http-b", toB, n)
		// b's requests crossed an egress on b's own SNI.
		sniB := names.SNI("mes-http-b", "default", "mes", 80)
		eventually(t, 10*time.Second, "egress logs of mes-http-b", func() error {
			if logs := e.envoys[".egress-1"].LogText() + e.envoys[".egress-2"].LogText(); !strings.Contains(logs, "sni="+sniB) {
				return fmt.Errorf("no request with SNI %s at the egresses", sniB)
			}
			return nil
		})
	})

	t.Run("MeshRetry on the workload turns two upstream 503s into a 200", func(t *testing.T) {
		code, body := getWith("http://" + flakyOut + "/")
		require.Equal(t, 200, code, body)
		assert.Equal(t, "third time lucky", body)
		retries, err := web.StatInt(context.Background(), "cluster."+cluster("mes-flaky")+".upstream_rq_retry")
		require.NoError(t, err)
		assert.Equal(t, int64(2), retries, "web's Envoy retried twice")
		assert.Equal(t, int32(3), flakyCalls.Load(), "the upstream saw three attempts")
		for _, eg := range []string{".egress-1", ".egress-2"} {
			n, err := e.envoys[eg].StatInt(context.Background(), "cluster."+cluster("mes-flaky")+".upstream_rq_retry")
			require.NoError(t, err)
			assert.Zero(t, n, "%s retries nothing itself", eg)
		}
	})

	t.Run("MeshHealthCheck and MeshCircuitBreaker shape the egresses' upstream cluster, not the workload's", func(t *testing.T) {
		for _, eg := range []string{".egress-1", ".egress-2"} {
			eventually(t, 20*time.Second, eg+" health-checks mes-http-b", func() error {
				if n, err := e.envoys[eg].StatInt(context.Background(), "cluster."+cluster("mes-http-b")+".health_check.success"); err != nil || n == 0 {
					return fmt.Errorf("health_check.success %d %v", n, err)
				}
				return nil
			})
			c := dumpedCluster(t, e.envoys[eg], cluster("mes-http-b"))
			assert.Contains(t, c, `"max_connections":7`, "%s: the circuit breaker's thresholds", eg)
			assert.Contains(t, c, `"path":"/health"`, "%s: the health check", eg)
		}
		c := dumpedCluster(t, web, cluster("mes-http-b"))
		assert.NotContains(t, c, "health_checks", "web's cluster to the egresses has no health check")
		assert.NotContains(t, c, `"max_connections":7`, "web's cluster to the egresses has no circuit breaker of the policy")
		assert.Contains(t, c, "127.0.0.2", "web's cluster for mes-http-b goes to the egresses")
		n, err := web.StatInt(context.Background(), "cluster."+cluster("mes-http-b")+".health_check.attempt")
		require.NoError(t, err)
		assert.Zero(t, n)
	})

	t.Run("egress-1 killed: connect failures are retried on egress-2 although MeshRetry asks only for 409s and 503s", func(t *testing.T) {
		e.envoys[".egress-1"].Kill()
		failsBefore, err := web.StatInt(context.Background(), "cluster."+cluster("mes-flaky")+".upstream_cx_connect_fail")
		require.NoError(t, err)
		for i := range 8 {
			code, body := getWith("http://" + flakyOut + "/")
			require.Equal(t, 200, code, "request %d after egress-1 died: %s", i, body)
			require.NoError(t, e.echoErr("web", fmt.Sprintf("tcp %d", i)), "tcp connection %d after egress-1 died", i)
		}
		failsAfter, err := web.StatInt(context.Background(), "cluster."+cluster("mes-flaky")+".upstream_cx_connect_fail")
		require.NoError(t, err)
		assert.Greater(t, failsAfter, failsBefore, "some requests met the dead egress and were retried")
		t.Logf("8 requests after egress-1 died: all 200; %d connect failures retried on egress-2", failsAfter-failsBefore)
	})
}

// dumpedCluster is the compact JSON of one dynamic cluster in p's
// /config_dump.
func dumpedCluster(t *testing.T, p *envoyproc.Proc, name string) string {
	t.Helper()
	raw, err := p.ConfigDump("?resource=dynamic_active_clusters&include_eds")
	require.NoError(t, err)
	var dump struct {
		Configs []struct {
			Cluster json.RawMessage `json:"cluster"`
		} `json:"configs"`
	}
	require.NoError(t, json.Unmarshal([]byte(raw), &dump))
	for _, c := range dump.Configs {
		var head struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(c.Cluster, &head) == nil && head.Name == name {
			var v any
			require.NoError(t, json.Unmarshal(c.Cluster, &v))
			b, err := json.Marshal(v)
			require.NoError(t, err)
			return string(b)
		}
	}
	t.Fatalf("no dynamic cluster %s in the config dump", name)
	return ""
}

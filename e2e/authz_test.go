package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/e2e/testenv"
)

// Fixed ports of this test (23000-23099 are its own; e2e tests run one at a time).
const (
	authzHTTP  = "127.0.0.1:23000"
	authzGRPC  = "127.0.0.1:23001"
	authzTCP   = "127.0.0.1:23002"
	authzHTTPS = "127.0.0.1:23003"
	authzProxy = "127.0.0.1:23080"
	// authzKeepAlive is the outbound of mes-keepalive, which only the
	// keep-alive client uses, so its listener's connection counter is its own.
	authzKeepAlive = "127.0.0.1:23004"
	authzNodeID    = "default.authz"
)

// authzDataplane is the source of every request: kuma.io/service authz-web.
const authzDataplane = `type: Dataplane
mesh: default
name: authz
networking:
  address: 127.0.0.1
  transparentProxying: {redirectPortOutbound: 15105}
  inbound:
    - port: 23050
      servicePort: 80
      serviceAddress: 127.0.0.12
      tags:
        kuma.io/service: authz-web
        version: v1
  outbound:
    - port: 23000
      backendRef: {kind: MeshExternalService, name: mes-http}
    - port: 23001
      backendRef: {kind: MeshExternalService, name: mes-grpc}
    - port: 23002
      backendRef: {kind: MeshExternalService, name: mes-tcp}
    - port: 23003
      backendRef: {kind: MeshExternalService, name: mes-https}
    - port: 23004
      backendRef: {kind: MeshExternalService, name: mes-keepalive}
`

// mesKeepAlive is httpbin.org again under another name: its outbound
// listener's stats (stat_prefix outbound_default_mes-keepalive__default_extsvc_80)
// count only the keep-alive client's connections.
const mesKeepAlive = `type: MeshExternalService
name: mes-keepalive
mesh: default
spec:
  match: {type: HostnameGenerator, port: 80, protocol: http}
  endpoints:
    - {address: httpbin.org, port: 80}
`

// authzDropDir holds the seed's HostnameGenerator and HTTP, HTTPS, gRPC and
// TCP examples, mes-keepalive and the authz Dataplane.
func authzDropDir(t *testing.T) string {
	t.Helper()
	drop := filepath.Join(t.TempDir(), "drop")
	require.NoError(t, os.MkdirAll(drop, 0o755))
	for _, f := range []string{"hostname-generator.yaml", "mes-http.yaml", "mes-https.yaml", "mes-grpc.yaml", "mes-tcp.yaml"} {
		copyFile(t, filepath.Join(testenv.RepoRoot(), "examples", f), filepath.Join(drop, f))
	}
	writeFile(t, filepath.Join(drop, "mes-keepalive.yaml"), mesKeepAlive)
	writeFile(t, filepath.Join(drop, "dataplane-authz.yaml"), authzDataplane)
	return drop
}

const denyAuthzWeb = `type: MeshTrafficPermission
name: deny-authz-web
mesh: default
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: MeshService, name: authz-web}
      default: {action: Deny}
`

const allowAuthzWebHTTP = `type: MeshTrafficPermission
name: allow-authz-web-http
mesh: default
spec:
  targetRef: {kind: MeshExternalService, name: mes-http}
  from:
    - targetRef: {kind: MeshSubset, tags: {version: v1}}
      default: {action: Allow}
`

const forbiddingMesh = `type: Mesh
name: default
routing:
  defaultForbidMeshExternalServiceAccess: true
`

// curlCode runs curl and returns the HTTP status and body.
func curlCode(t *testing.T, curl string, args ...string) (int, string) {
	t.Helper()
	out, err := run(t, 20*time.Second, "", curl, append([]string{"-s", "-w", "\n%{http_code}"}, args...)...)
	i := strings.LastIndexByte(out, '\n')
	code, cerr := strconv.Atoi(strings.TrimSpace(out[i+1:]))
	if err != nil || cerr != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	return code, out[:i]
}

// counter reads one Envoy stat (0 when absent).
func (m *meshEnv) counter(t *testing.T, name string) int {
	t.Helper()
	return m.counterSum(t, "^"+regexp.QuoteMeta(name)+"$")
}

// counterSum is the sum of the Envoy counters whose names match filter.
func (m *meshEnv) counterSum(t *testing.T, filter string) int {
	t.Helper()
	body, err := m.envoy.Get("/stats?filter=" + filter)
	require.NoError(t, err)
	n := 0
	for _, line := range strings.Split(body, "\n") {
		if _, v, ok := strings.Cut(line, ": "); ok {
			c, _ := strconv.Atoi(strings.TrimSpace(v))
			n += c
		}
	}
	return n
}

// TestEgressAuthorization drives MeshTrafficPermission and the Mesh's
// defaultForbidMeshExternalServiceAccess through `meshext run` file drops
// into one real stock Envoy running libmeshext.so, never restarted.
func TestEgressAuthorization(t *testing.T) {
	_, caFile, hostsFile := standIns(t)
	curl := testenv.Tool(t, "curl")
	grpcurl := testenv.Tool(t, "grpcurl")
	nc := testenv.Tool(t, "nc")

	drop := authzDropDir(t)
	m := startMesh(t, drop, meshOpts{nodeID: authzNodeID, hostsFile: hostsFile, systemCA: caFile,
		runArgs: []string{"--http-proxy-listen", authzProxy},
		// Connections on a replaced filter chain get closed at random over
		// the drain time (default 600 s); an hour makes closing the
		// keep-alive connection below a negligible chance.
		envoyArgs: []string{"--drain-time-s", "3600"}})
	for _, a := range []string{authzHTTP, authzGRPC, authzTCP, authzHTTPS, authzKeepAlive, authzProxy} {
		m.waitListener(t, a)
	}
	proxy := []string{"--proxy", "http://" + authzProxy}
	grpcList := func() (string, error) {
		return run(t, 20*time.Second, "", grpcurl, "-plaintext", authzGRPC, "list")
	}
	tcpEcho := func() string {
		out, _ := run(t, 20*time.Second, "echo this\n", nc, "-q", "3", "127.0.0.1", "23002")
		return out
	}

	t.Run("no policy: everything allowed", func(t *testing.T) {
		code, body := curlCode(t, curl, "http://"+authzHTTP+"/get")
		assert.Equal(t, 200, code, body)
		out, err := grpcList()
		assert.NoError(t, err, out)
		assert.Contains(t, out, "grpc.health.v1.Health")
		assert.Equal(t, "echo this\n", tcpEcho())
	})
	t.Run("forward proxy reaches an HTTP MES by its generated hostname", func(t *testing.T) {
		code, body := curlCode(t, curl, append(proxy, "http://mes-http.svc.meshext.local/get")...)
		require.Equal(t, 200, code, body)
		assert.Contains(t, body, `"url"`)
		// The cluster header the filter sets never reaches the upstream.
		assert.NotContains(t, strings.ToLower(body), "x-meshext-cluster")
		// Any case, trailing dot, with the port: still the same MES.
		code, body = curlCode(t, curl, append(proxy, "http://MES-HTTPS.svc.meshext.local.:80/get")...)
		require.Equal(t, 200, code, body)
		assert.Contains(t, body, "https://httpbin.org/get", "mes-https originated TLS")
	})
	t.Run("forward proxy: unknown host is 404", func(t *testing.T) {
		code, body := curlCode(t, curl, append(proxy, "http://nope.svc.meshext.local/get")...)
		assert.Equal(t, 404, code, body)
		assert.Contains(t, body, `no MeshExternalService matches host "nope.svc.meshext.local"`)
	})

	// A keep-alive connection opened before the change, to mes-keepalive's
	// outbound, which nothing else connects to: Envoy's counter of that
	// listener's downstream connections must stay 1 while requests are
	// served before and after the change.
	keepAlive := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	t.Cleanup(keepAlive.CloseIdleConnections)
	keepAliveCx := "listener.outbound_default_mes-keepalive__default_extsvc_80.downstream_cx_total"
	keepAliveGet := func() (int, string) {
		t.Helper()
		var reused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+authzKeepAlive+"/get", nil)
		require.NoError(t, err)
		resp, err := keepAlive.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 1, m.counter(t, keepAliveCx), "Envoy accepted another connection on the keep-alive listener (client reused: %v)", reused)
		return resp.StatusCode, string(b)
	}
	code, body := keepAliveGet()
	require.Equal(t, 200, code, body)

	ldsBefore := m.counter(t, "listener_manager.lds.update_success")
	writeFile(t, filepath.Join(drop, "mtp.yaml"), denyAuthzWeb)
	t.Run("Deny policy dropped in: 403, gRPC PERMISSION_DENIED, TCP closed", func(t *testing.T) {
		eventually(t, 20*time.Second, "403 after the Deny policy", func() error {
			if code, body := curlCode(t, curl, "http://"+authzHTTP+"/get"); code != 403 {
				return fmt.Errorf("got %d %s", code, body)
			}
			// The proxy's decision comes with its listener (LDS), not RDS.
			if code, body := curlCode(t, curl, append(proxy, "http://mes-http.svc.meshext.local/get")...); code != 403 {
				return fmt.Errorf("through the proxy: got %d %s", code, body)
			}
			return nil
		})
		code, body := curlCode(t, curl, "http://"+authzHTTP+"/get")
		assert.Equal(t, 403, code)
		assert.Contains(t, body, `access to MeshExternalService "mes-http" in mesh "default" from "authz-web" denied by MeshTrafficPermission "deny-authz-web"`)
		// The connection opened before the change is decided by the new
		// policy too: the decision is in the route table, which RDS swaps
		// under open connections (TestRevocationOnOpenConnections).
		code, body = keepAliveGet()
		assert.Equal(t, 403, code, body)
		assert.Contains(t, body, `access to MeshExternalService "mes-keepalive" in mesh "default" from "authz-web" denied by MeshTrafficPermission "deny-authz-web"`)
		code, body = curlCode(t, curl, append(proxy, "http://mes-http.svc.meshext.local/get")...)
		assert.Equal(t, 403, code, body)

		out, err := grpcList()
		assert.Error(t, err, out)
		assert.Contains(t, out, "PermissionDenied", "grpc-status 7")
		assert.Contains(t, out, "deny-authz-web")

		// The denied source's chain never connects upstream (network RBAC
		// alone would act only on the first client bytes).
		// Kuma's destination name of the seed's mes-tcp (kuma-system, port 4242).
		upstreamCx := "cluster." + names.LegacyDestination("default", "mes-tcp", "kuma-system", "default", names.ExtSvcShortName, 4242) + ".upstream_cx_total"
		eventually(t, 20*time.Second, "TCP connection closed", func() error {
			before := m.counter(t, upstreamCx)
			if out := tcpEcho(); out != "" {
				return fmt.Errorf("echo came back: %q", out)
			}
			if after := m.counter(t, upstreamCx); after != before {
				return fmt.Errorf("%s went %d -> %d", upstreamCx, before, after)
			}
			return nil
		})
		assert.Greater(t, m.counter(t, "listener_manager.lds.update_success"), ldsBefore, "delivered as an LDS update to the running Envoy")
		// Decisions show in the access log: on the outbounds decided at
		// render time (a direct response, the decision as route metadata),
		// and the forward proxy's filter counts its denials.
		eventually(t, 10*time.Second, "access log of the denials", func() error {
			log := m.envoyLog()
			for _, want := range []string{"details=direct_response authz=- policy=- static=Deny/deny-authz-web", "cluster=meshext_denied"} {
				if !strings.Contains(log, want) {
					return fmt.Errorf("no %q in the Envoy log", want)
				}
			}
			return nil
		})
		assert.Positive(t, m.counter(t, "dynamicmodulescustom.meshext_denied"))
	})

	writeFile(t, filepath.Join(drop, "mesh.yaml"), forbiddingMesh)
	writeFile(t, filepath.Join(drop, "mtp.yaml"), allowAuthzWebHTTP)
	t.Run("defaultForbidMeshExternalServiceAccess: only what an Allow policy matches", func(t *testing.T) {
		// The outbound's decision is in its route table (RDS), the
		// proxy's in its listener's filter (LDS): two updates, both awaited.
		eventually(t, 20*time.Second, "mes-http allowed by its Allow policy", func() error {
			if code, body := curlCode(t, curl, "http://"+authzHTTP+"/get"); code != 200 {
				return fmt.Errorf("got %d %s", code, body)
			}
			if code, body := curlCode(t, curl, append(proxy, "http://mes-http.svc.meshext.local/get")...); code != 200 {
				return fmt.Errorf("through the proxy: got %d %s", code, body)
			}
			return nil
		})
		code, body := curlCode(t, curl, "http://"+authzHTTPS+"/get")
		assert.Equal(t, 403, code, body)
		assert.Contains(t, body, `"mes-https"`)
		code, body = curlCode(t, curl, append(proxy, "http://mes-https.svc.meshext.local/get")...)
		assert.Equal(t, 403, code, body)
		out, err := grpcList()
		assert.Error(t, err, out)
		assert.Contains(t, out, "PermissionDenied")
		assert.Equal(t, "", tcpEcho())
	})
}

// TestEgressAuthorizationWithoutPlugin: with --plugin off the same policies
// are enforced by native Envoy RBAC (no Go in Envoy): never silently open.
func TestEgressAuthorizationWithoutPlugin(t *testing.T) {
	_, caFile, hostsFile := standIns(t)
	curl := testenv.Tool(t, "curl")
	grpcurl := testenv.Tool(t, "grpcurl")

	drop := authzDropDir(t)
	writeFile(t, filepath.Join(drop, "mesh.yaml"), forbiddingMesh)
	writeFile(t, filepath.Join(drop, "mtp.yaml"), allowAuthzWebHTTP)
	m := startMesh(t, drop, meshOpts{nodeID: authzNodeID, hostsFile: hostsFile, systemCA: caFile,
		runArgs: []string{"--http-proxy-listen", authzProxy, "--plugin", "off"}})
	for _, a := range []string{authzHTTP, authzGRPC, authzHTTPS, authzProxy} {
		m.waitListener(t, a)
	}
	proxy := []string{"--proxy", "http://" + authzProxy}

	code, body := curlCode(t, curl, "http://"+authzHTTP+"/get")
	assert.Equal(t, 200, code, "allowed by allow-authz-web-http: %s", body)
	code, body = curlCode(t, curl, "http://"+authzHTTPS+"/get")
	assert.Equal(t, 403, code, "mesh forbids by default: %s", body)
	code, body = curlCode(t, curl, append(proxy, "http://mes-http.svc.meshext.local/get")...)
	assert.Equal(t, 200, code, body)
	code, body = curlCode(t, curl, append(proxy, "http://mes-https.svc.meshext.local/get")...)
	assert.Equal(t, 403, code, body)
	code, body = curlCode(t, curl, append(proxy, "http://nope.svc.meshext.local/get")...)
	assert.Equal(t, 404, code, body)
	out, err := run(t, 20*time.Second, "", grpcurl, "-plaintext", authzGRPC, "list")
	assert.Error(t, err, out)
	assert.Contains(t, out, "PermissionDenied")
	eventually(t, 10*time.Second, "access log names the RBAC policy", func() error {
		if want := "rbac_access_denied_matched_policy[meshext:mesh-default]"; !strings.Contains(m.envoyLog(), want) {
			return fmt.Errorf("no %q in the Envoy log", want)
		}
		return nil
	})
	lds, err := os.ReadFile(filepath.Join(m.xds, authzNodeID, "lds.json"))
	require.NoError(t, err)
	assert.NotContains(t, string(lds), "envoy.filters.http.dynamic_modules", "no Go filter rendered")
	assert.Contains(t, string(lds), "envoy.filters.http.rbac")
}

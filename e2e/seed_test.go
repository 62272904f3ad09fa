package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
	"github.com/meshext/meshext/e2e/upstream"
)

// seedExamples are the seed's resource files, copied byte for byte from examples/.
var seedExamples = []string{"hostname-generator.yaml", "mes-tcp.yaml", "mes-tcp-tls.yaml", "mes-tcp-mtls.yaml",
	"mes-http.yaml", "mes-https.yaml", "mes-grpc.yaml", "mes-grpcs.yaml"}

// e2eDataplane has one outbound per seed example (the seed's "Universal mode
// without Transparent Proxy" form) and a pass-through inbound.
const e2eDataplane = `type: Dataplane
mesh: default
name: e2e
networking:
  address: 127.0.0.1
  transparentProxying: {redirectPortOutbound: 15101}
  inbound:
    - port: 16380
      servicePort: 80
      serviceAddress: 127.0.0.12
      tags:
        kuma.io/service: e2e
        kuma.io/protocol: http
  outbound:
    - port: 14242
      backendRef: {kind: MeshExternalService, name: mes-tcp}
    - port: 14243
      backendRef: {kind: MeshExternalService, name: mes-tcp-tls}
    - port: 14244
      backendRef: {kind: MeshExternalService, name: mes-tcp-mtls}
    - port: 18080
      backendRef: {kind: MeshExternalService, name: mes-http}
    - port: 18443
      backendRef: {kind: MeshExternalService, name: mes-https}
    - port: 19000
      backendRef: {kind: MeshExternalService, name: mes-grpc}
    - port: 19001
      backendRef: {kind: MeshExternalService, name: mes-grpcs}
`

// standIns starts loopback stand-ins for tcpbin.com, httpbin.org and
// grpcbin.test.k6.io on the seed's ports and returns the CA file and hosts file.
func standIns(t *testing.T) (set *upstream.Set, caFile, hostsFile string) {
	t.Helper()
	testenv.RequireRoot(t) // the seed's ports 80 and 443
	set, err := upstream.Start(upstream.DefaultConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = set.Close() })
	dir := t.TempDir()
	caFile = filepath.Join(dir, "ca.pem")
	require.NoError(t, set.CA.WriteCertPEM(caFile))
	hostsFile = filepath.Join(dir, "hosts")
	require.NoError(t, os.WriteFile(hostsFile, set.HostsFile(), 0o644))
	return set, caFile, hostsFile
}

// seedDropDir is a drop directory with the seed's examples and the e2e Dataplane.
func seedDropDir(t *testing.T) string {
	t.Helper()
	drop := seedServicesDropDir(t)
	writeFile(t, filepath.Join(drop, "dataplane-e2e.yaml"), e2eDataplane)
	return drop
}

// seedServicesDropDir is a drop directory with the seed's examples only.
func seedServicesDropDir(t *testing.T) string {
	t.Helper()
	drop := filepath.Join(t.TempDir(), "drop")
	require.NoError(t, os.MkdirAll(drop, 0o755))
	for _, f := range seedExamples {
		copyFile(t, filepath.Join(testenv.RepoRoot(), "examples", f), filepath.Join(drop, f))
	}
	return drop
}

// TestSeedExamples runs each of the seed's seven examples with the client and
// command the seed gives, through a real Envoy configured by `meshext run`
// from the command line: by file drop (--xds file) and over ADS (--xds ads).
func TestSeedExamples(t *testing.T) {
	_, caFile, hostsFile := standIns(t)
	for _, ads := range []bool{false, true} {
		name := map[bool]string{false: "xds=file", true: "xds=ads"}[ads]
		t.Run(name, func(t *testing.T) {
			m := startMesh(t, seedDropDir(t), meshOpts{nodeID: "default.e2e", hostsFile: hostsFile, systemCA: caFile, ads: ads})
			seedExamplesThrough(t, m)
			if ads {
				// The config came over the ADS stream meshext run serves.
				assert.Equal(t, "1", m.envoy.StatValue("control_plane.connected_state"), "Envoy connected to meshext's ADS server")
			}
		})
	}
}

// seedExamplesThrough runs the seed's seven commands against the e2e
// Dataplane's outbound listeners of m's Envoy, and checks the inbound, the
// DNS answers and that no key reaches Envoy's log.
func seedExamplesThrough(t *testing.T, m *meshEnv) {
	t.Helper()
	nc := testenv.Tool(t, "nc")
	curl := testenv.Tool(t, "curl")
	grpcurl := testenv.Tool(t, "grpcurl")
	for _, a := range []string{"127.0.0.1:14242", "127.0.0.1:14243", "127.0.0.1:14244", "127.0.0.1:18080", "127.0.0.1:18443", "127.0.0.1:19000", "127.0.0.1:19001"} {
		m.waitListener(t, a)
	}

	for _, tc := range []struct{ name, port string }{{"mes-tcp", "14242"}, {"mes-tcp-tls", "14243"}, {"mes-tcp-mtls", "14244"}} {
		t.Run(tc.name, func(t *testing.T) {
			// Seed: echo 'echo this' | nc -q 3 <name>.svc.meshext.local <port>
			out, err := run(t, 20*time.Second, "echo this\n", nc, "-q", "3", "127.0.0.1", tc.port)
			require.NoError(t, err, out)
			assert.Equal(t, "echo this\n", out)
		})
	}
	t.Run("mes-http", func(t *testing.T) {
		// Seed: curl -s http://mes-http.svc.meshext.local
		out, err := run(t, 20*time.Second, "", curl, "-s", "http://127.0.0.1:18080")
		require.NoError(t, err, out)
		assert.Contains(t, out, "<html")
		assert.Contains(t, out, "httpbin.org")
		// The upstream saw the endpoint's host name (Kuma's autoHostRewrite).
		out, err = run(t, 20*time.Second, "", curl, "-s", "http://127.0.0.1:18080/get")
		require.NoError(t, err, out)
		var got struct{ Headers map[string]string }
		require.NoError(t, json.Unmarshal([]byte(out), &got), out)
		assert.Equal(t, "httpbin.org", got.Headers["Host"])
	})
	t.Run("mes-https", func(t *testing.T) {
		// Seed: curl http://mes-https.svc.meshext.local (Envoy originates TLS to httpbin.org:443)
		out, err := run(t, 20*time.Second, "", curl, "--fail", "http://127.0.0.1:18443/get")
		require.NoError(t, err, out)
		assert.Contains(t, out, `"url"`)
		assert.Contains(t, out, "https://httpbin.org/get", "the stand-in answered over TLS")
	})
	for _, tc := range []struct{ name, port string }{{"mes-grpc", "19000"}, {"mes-grpcs", "19001"}} {
		t.Run(tc.name, func(t *testing.T) {
			// Seed: grpcurl -plaintext -v <name>.svc.meshext.local:<port> list
			out, err := run(t, 20*time.Second, "", grpcurl, "-plaintext", "-v", "127.0.0.1:"+tc.port, "list")
			require.NoError(t, err, out)
			assert.Contains(t, out, "grpc.health.v1.Health")
			assert.Contains(t, out, upstream.GRPCBinService)
		})
	}
	t.Run("inbound pass-through", func(t *testing.T) {
		out, err := run(t, 20*time.Second, "", curl, "-s", "--fail", "http://127.0.0.1:16380/get")
		require.NoError(t, err, out)
		assert.Contains(t, out, `"url"`)
	})
	t.Run("embedded DNS answers generated hostnames with VIPs", func(t *testing.T) {
		var st struct {
			Services []struct {
				Name      string
				VIP       string
				Hostnames []string
			}
		}
		require.NoError(t, json.Unmarshal([]byte(m.status(t)), &st))
		require.Len(t, st.Services, 7)
		c := &dns.Client{Timeout: 2 * time.Second}
		for _, s := range st.Services {
			require.Contains(t, s.Hostnames, s.Name+".svc.meshext.local")
			q := new(dns.Msg)
			q.SetQuestion(s.Name+".svc.meshext.local.", dns.TypeA)
			r, _, err := c.Exchange(q, m.dnsAddr)
			require.NoError(t, err)
			require.Len(t, r.Answer, 1, s.Name)
			a := r.Answer[0].(*dns.A)
			assert.Equal(t, s.VIP, a.A.String())
			assert.True(t, netip.MustParsePrefix("242.0.0.0/8").Contains(netip.MustParseAddr(a.A.String())))
		}
		q := new(dns.Msg)
		q.SetQuestion("nope.svc.meshext.local.", dns.TypeA)
		r, _, err := c.Exchange(q, m.dnsAddr)
		require.NoError(t, err)
		assert.Equal(t, dns.RcodeNameError, r.Rcode)
	})
	assert.False(t, strings.Contains(m.envoyLog(), "PRIVATE KEY"), "no key material in Envoy's log")
}

// TestSeedExamplesWithPolicies adds examples/policies (one Kuma policy per
// kind, as `make run` serves them) to the seed's drop: the seven commands
// still behave as the README shows, and each example's effect is visible.
func TestSeedExamplesWithPolicies(t *testing.T) {
	_, caFile, hostsFile := standIns(t)
	curl := testenv.Tool(t, "curl")
	drop := seedDropDir(t)
	policies := filepath.Join(testenv.RepoRoot(), "examples", "policies")
	entries, err := os.ReadDir(policies)
	require.NoError(t, err)
	require.Len(t, entries, 8, "one example per kind")
	for _, e := range entries {
		copyFile(t, filepath.Join(policies, e.Name()), filepath.Join(drop, "policy-"+e.Name()))
	}
	// The example MeshAccessLog is the drop's only access log.
	m := startMesh(t, drop, meshOpts{nodeID: "default.e2e", hostsFile: hostsFile, systemCA: caFile, noAccessLog: true})
	seedExamplesThrough(t, m)

	cluster := func(name string, port uint32) string {
		return names.LegacyDestination("default", name, "kuma-system", "default", names.ExtSvcShortName, port)
	}
	t.Run("MeshHTTPRoute: x-backend https goes to mes-https, the rest is tagged", func(t *testing.T) {
		out, err := run(t, 20*time.Second, "", curl, "-s", "-H", "x-backend: https", "http://127.0.0.1:18080/get")
		require.NoError(t, err, out)
		assert.Contains(t, out, "https://httpbin.org/get", "routed to mes-https (TLS to httpbin.org:443)")
		out, err = run(t, 20*time.Second, "", curl, "-s", "http://127.0.0.1:18080/get")
		require.NoError(t, err, out)
		assert.Contains(t, out, "http://httpbin.org/get")
		assert.Contains(t, out, `"X-Routed-By": "meshext"`)
	})
	t.Run("MeshTCPRoute: mes-tcp's connections go 90/10 to mes-tcp and mes-tcp-tls", func(t *testing.T) {
		before := m.counter(t, "cluster."+cluster("mes-tcp-tls", 4243)+".upstream_cx_total")
		for range 100 {
			testnet.EchoThrough(t, "127.0.0.1:14242", "echo this\n", 10*time.Second)
		}
		via := m.counter(t, "cluster."+cluster("mes-tcp-tls", 4243)+".upstream_cx_total") - before
		assert.Positive(t, via, "some connections to mes-tcp went through mes-tcp-tls")
		assert.Less(t, via, 40, "about 10 of 100")
		t.Logf("100 echoes through mes-tcp: %d via mes-tcp-tls", via)
	})
	t.Run("MeshHealthCheck probes mes-tcp; MeshAccessLog logs to Envoy's output", func(t *testing.T) {
		eventually(t, 20*time.Second, "health checks of mes-tcp", func() error {
			if n := m.counter(t, "cluster."+cluster("mes-tcp", 4242)+".health_check.success"); n == 0 {
				return fmt.Errorf("no successful health check yet")
			}
			return nil
		})
		eventually(t, 20*time.Second, "access log lines", func() error {
			for _, want := range []string{"cluster=" + cluster("mes-http", 80) + " ", "cluster=" + cluster("mes-tcp", 4242) + " "} {
				if !strings.Contains(m.envoyLog(), want) {
					return fmt.Errorf("no %q in Envoy's output", want)
				}
			}
			return nil
		})
	})
}

package e2e

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/e2e/testpki"
	"github.com/meshext/meshext/e2e/upstream"
)

// tlsCase is one MeshExternalService with TLS origination against its own
// HTTPS stand-in, reached through its own outbound port.
type tlsCase struct {
	name     string
	server   []upstream.Option // the HTTPS server's certificate and policy
	tls      string            // the MES spec.tls block (YAML, indented 2 under spec)
	wantOK   bool
	reason   string // for refusals: a substring of the TLS failure reason in Envoy's access log
	outbound int
	addr     string
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestTLSMatrix drives Envoy's TLS origination, as rendered by meshext, into
// every refusal the issue lists and their positive counterparts. Each refusal
// must be visible in Envoy's access log with its reason.
func TestTLSMatrix(t *testing.T) {
	caA, err := testpki.NewCA(testpki.CommonName("matrix CA A"))
	require.NoError(t, err)
	caB, err := testpki.NewCA(testpki.CommonName("matrix CA B"))
	require.NoError(t, err)
	issue := func(opts ...testpki.Option) tls.Certificate {
		l, err := caA.Issue(append([]testpki.Option{testpki.ServerAuth()}, opts...)...)
		require.NoError(t, err)
		return l.TLS
	}
	good := issue(testpki.DNSNames("good.test"))
	byB, err := caB.Issue(testpki.ServerAuth(), testpki.DNSNames("good.test"))
	require.NoError(t, err)
	other := issue(testpki.DNSNames("other.test"))
	spiffe := issue(testpki.URIs("spiffe://example.local/ns/local/sa/api"))
	self, err := testpki.SelfSigned(testpki.ServerAuth(), testpki.DNSNames("good.test"))
	require.NoError(t, err)
	selfOther, err := testpki.SelfSigned(testpki.ServerAuth(), testpki.DNSNames("elsewhere.test"))
	require.NoError(t, err)
	clientCA, err := testpki.NewCA(testpki.CommonName("matrix client CA"))
	require.NoError(t, err)
	client, err := clientCA.Issue(testpki.ClientAuth(), testpki.CommonName("matrix-client"))
	require.NoError(t, err)

	caInline := "caCert: {inline: " + b64(caA.CertPEM) + "}"
	cases := []*tlsCase{
		// Refusals.
		{name: "wrong-ca", server: []upstream.Option{upstream.TLS(byB.TLS)}, reason: "CERTIFICATE_VERIFY_FAILED",
			tls: "verification: {serverName: good.test, " + caInline + "}"},
		{name: "san-exact-mismatch", server: []upstream.Option{upstream.TLS(good)}, reason: "CERTIFICATE_VERIFY_FAILED",
			tls: "verification: {serverName: good.test, subjectAltNames: [{type: Exact, value: api.good.test}], " + caInline + "}"},
		{name: "san-prefix-mismatch", server: []upstream.Option{upstream.TLS(spiffe)}, reason: "CERTIFICATE_VERIFY_FAILED",
			tls: "verification: {serverName: good.test, subjectAltNames: [{type: Prefix, value: \"spiffe://other.local/\"}], " + caInline + "}"},
		{name: "cert-for-another-name", server: []upstream.Option{upstream.TLS(other)}, reason: "CERTIFICATE_VERIFY_FAILED",
			tls: "verification: {serverName: good.test, " + caInline + "}"},
		{name: "tls12-max-vs-tls13-only", server: []upstream.Option{upstream.TLS(good), upstream.TLSVersions(tls.VersionTLS13, tls.VersionTLS13)},
			reason: "PROTOCOL_VERSION", tls: "version: {min: TLS12, max: TLS12}\n    verification: {serverName: good.test, " + caInline + "}"},
		// TLS 1.2: the server refuses inside the handshake, so BoringSSL names the alert.
		{name: "client-cert-required-not-configured", server: []upstream.Option{upstream.TLS(good), upstream.TLSVersions(tls.VersionTLS12, tls.VersionTLS12), upstream.RequireClientCertFrom(clientCA.Pool())},
			reason: "ALERT_HANDSHAKE_FAILURE", tls: "verification: {serverName: good.test, " + caInline + "}"},
		// TLS 1.3: the client's handshake completes before the server checks the
		// certificate; the server's alert arrives as a reset, which Envoy logs as
		// upstream connection termination (UC) with no transport failure reason
		// (after Kuma's default MeshRetry: flags=URX,UC).
		{name: "client-cert-required-not-configured-tls13", server: []upstream.Option{upstream.TLS(good), upstream.RequireClientCertFrom(clientCA.Pool())},
			reason: "UC sni=", tls: "verification: {serverName: good.test, " + caInline + "}"},
		// Positive counterparts.
		{name: "secured-ok", server: []upstream.Option{upstream.TLS(good)}, wantOK: true,
			tls: "verification: {serverName: good.test, " + caInline + "}"},
		{name: "tlsauto-vs-tls13-only", server: []upstream.Option{upstream.TLS(good), upstream.TLSVersions(tls.VersionTLS13, tls.VersionTLS13)}, wantOK: true,
			tls: "verification: {serverName: good.test, " + caInline + "}"},
		{name: "client-cert-configured", server: []upstream.Option{upstream.TLS(good), upstream.RequireClientCertFrom(clientCA.Pool())}, wantOK: true,
			tls: "verification: {serverName: good.test, " + caInline + ", clientCert: {inline: " + b64(client.CertPEM) + "}, clientKey: {inline: " + b64(client.KeyPEM) + "}}"},
		{name: "skipca-self-signed", server: []upstream.Option{upstream.TLS(self.TLS)}, wantOK: true,
			tls: "verification: {mode: SkipCA, serverName: good.test, subjectAltNames: [{type: Exact, value: good.test}]}"},
		// F3 caveat: Envoy's ACCEPT_UNTRUSTED accepts a SAN mismatch and only counts
		// it (and checks no SAN at all when the chain itself is untrusted).
		{name: "skipca-san-mismatch", server: []upstream.Option{upstream.TLS(other)}, wantOK: true,
			tls: "verification: {mode: SkipCA, serverName: good.test, subjectAltNames: [{type: Exact, value: good.test}], " + caInline + "}"},
		{name: "skipsan-mismatched-name", server: []upstream.Option{upstream.TLS(other)}, wantOK: true,
			tls: "verification: {mode: SkipSAN, serverName: good.test, " + caInline + "}"},
		{name: "skipall", server: []upstream.Option{upstream.TLS(selfOther.TLS)}, wantOK: true,
			tls: "verification: {mode: SkipAll, serverName: good.test}"},
		{name: "san-prefix-spiffe-uri", server: []upstream.Option{upstream.TLS(spiffe)}, wantOK: true,
			tls: "verification: {serverName: good.test, subjectAltNames: [{type: Prefix, value: \"spiffe://example.local/ns/local\"}], " + caInline + "}"},
	}

	drop := filepath.Join(t.TempDir(), "drop")
	require.NoError(t, os.MkdirAll(drop, 0o755))
	var outbounds strings.Builder
	for i, c := range cases {
		srv, err := upstream.StartHTTPBin(append([]upstream.Option{upstream.Addr("127.0.0.1:0")}, c.server...)...)
		require.NoError(t, err, c.name)
		t.Cleanup(func() { _ = srv.Close() })
		_, port, _ := net.SplitHostPort(srv.Addr())
		c.outbound = 21000 + i
		c.addr = "127.0.0.1:" + strconv.Itoa(c.outbound)
		mes := fmt.Sprintf(`type: MeshExternalService
name: %s
mesh: default
spec:
  match: {port: 443, protocol: http}
  endpoints:
    - {address: 127.0.0.1, port: %s}
  tls:
    enabled: true
    %s
`, c.name, port, c.tls)
		writeFile(t, filepath.Join(drop, c.name+".yaml"), mes)
		fmt.Fprintf(&outbounds, "    - port: %d\n      backendRef: {kind: MeshExternalService, name: %s}\n", c.outbound, c.name)
	}
	writeFile(t, filepath.Join(drop, "dataplane.yaml"), "type: Dataplane\nmesh: default\nname: matrix\nnetworking:\n  address: 127.0.0.1\n  transparentProxying: {redirectPortOutbound: 15102}\n  outbound:\n"+outbounds.String())

	m := startMesh(t, drop, meshOpts{nodeID: "default.matrix"})
	for _, c := range cases {
		m.waitListener(t, c.addr)
	}
	// Send every request first, then read the access log once: Envoy flushes
	// its log file every few seconds, not per line.
	type result struct {
		code int
		body string
		err  error
	}
	results := map[string]result{}
	for _, c := range cases {
		code, body, err := httpGet("http://" + c.addr + "/get")
		results[c.name] = result{code, body, err}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := results[c.name]
			require.NoError(t, r.err)
			if c.wantOK {
				assert.Equal(t, 200, r.code, r.body)
				assert.Contains(t, r.body, `"url"`)
				return
			}
			assert.Equal(t, 503, r.code, r.body)
			// The refusal and its reason are in Envoy's access log, on this service's line.
			eventually(t, 30*time.Second, "access log line for "+c.name, func() error {
				for _, l := range strings.Split(m.envoyLog(), "\n") {
					if strings.Contains(l, "cluster="+matrixCluster(c.name)+" ") && strings.Contains(l, c.reason) {
						return nil
					}
				}
				return fmt.Errorf("no access log line with cluster %s and %q in:\n%s", matrixCluster(c.name), c.reason, grepLines(m.envoyLog(), c.name))
			})
		})
	}
	// SkipCA keeps SAN matchers, but Envoy's ACCEPT_UNTRUSTED only counts a
	// mismatch (see controller/render/tls.go, F3): the count is what is checked.
	t.Run("skipca-san-mismatch-counted", func(t *testing.T) {
		untrusted := "cluster." + matrixCluster("skipca-self-signed") + ".ssl.fail_verify_error"
		assert.Equal(t, "1", m.envoy.StatValue(untrusted), "the untrusted self-signed chain is counted, not refused")
		bad := "cluster." + matrixCluster("skipca-san-mismatch") + ".ssl.fail_verify_san"
		n, err := strconv.Atoi(m.envoy.StatValue(bad))
		require.NoError(t, err, "stat %s", bad)
		assert.GreaterOrEqual(t, n, 1, "the SAN mismatch is counted")
	})
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// matrixCluster is the Envoy cluster of a matrix service: Kuma's destination
// name of a universal MeshExternalService on port 443 in zone "default".
func matrixCluster(name string) string {
	return names.LegacyDestination("default", name, "", "default", names.ExtSvcShortName, 443)
}

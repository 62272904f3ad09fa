package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/e2e/testpki"
	"github.com/meshext/meshext/e2e/upstream"
)

func mesFile(name string, port string, extra string) string {
	return fmt.Sprintf(`type: MeshExternalService
name: %s
mesh: default
spec:
  match: {port: 80, protocol: tcp}
  endpoints:
    - {address: 127.0.0.1, port: %s}
%s`, name, port, extra)
}

func liveDataplane(outbounds map[int]string) string {
	var b strings.Builder
	b.WriteString("type: Dataplane\nmesh: default\nname: live\nnetworking:\n  address: 127.0.0.1\n  transparentProxying: {redirectPortOutbound: 15103}\n  outbound:\n")
	for port := 22000; port < 22010; port++ {
		if name, ok := outbounds[port]; ok {
			fmt.Fprintf(&b, "    - port: %d\n      backendRef: {kind: MeshExternalService, name: %s}\n", port, name)
		}
	}
	return b.String()
}

// echoOnce sends a line over conn and reads it back.
func echoOnce(conn net.Conn, r *bufio.Reader, msg string) error {
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(msg + "\n")); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg+"\n" {
		return fmt.Errorf("echo: got %q", got)
	}
	return nil
}

// dialEcho opens a connection through an outbound and checks one echo.
func dialEcho(addr, msg string) (net.Conn, *bufio.Reader, error) {
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, nil, err
	}
	r := bufio.NewReader(conn)
	if err := echoOnce(conn, r, msg); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, r, nil
}

func vipsOf(t *testing.T, statusJSON string) map[string]string {
	t.Helper()
	var st struct {
		Services []struct{ Name, VIP string }
	}
	require.NoError(t, json.Unmarshal([]byte(statusJSON), &st))
	out := map[string]string{}
	for _, s := range st.Services {
		out[s.Name] = s.VIP
	}
	return out
}

// clientSecrets is the client certificate and key of live-mtls, two Secrets
// in one file so a rotation replaces both at once.
func clientSecrets(l *testpki.Leaf) string {
	return "type: Secret\nname: live-client-cert\nmesh: default\ndata: " + b64(l.CertPEM) +
		"\n---\ntype: Secret\nname: live-client-key\nmesh: default\ndata: " + b64(l.KeyPEM) + "\n"
}

func certSHA256(l *testpki.Leaf) string {
	sum := sha256.Sum256(l.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

// TestLiveChanges: a new file becomes reachable without restarting Envoy, a
// broken file changes nothing that works, a CA rotation and a client
// certificate rotation through Secrets keep open connections and apply to new
// ones, and a restart keeps every VIP.
func TestLiveChanges(t *testing.T) {
	ca1, err := testpki.NewCA(testpki.CommonName("live CA 1"))
	require.NoError(t, err)
	ca2, err := testpki.NewCA(testpki.CommonName("live CA 2"))
	require.NoError(t, err)
	leaf, err := ca1.Issue(testpki.ServerAuth(), testpki.DNSNames("rotate.test"))
	require.NoError(t, err)
	plain, err := upstream.StartTCPEcho(upstream.Addr("127.0.0.1:0"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = plain.Close() })
	tlsEcho, err := upstream.StartTCPEcho(upstream.Addr("127.0.0.1:0"), upstream.TLS(leaf.TLS))
	require.NoError(t, err)
	t.Cleanup(func() { _ = tlsEcho.Close() })
	_, plainPort, _ := net.SplitHostPort(plain.Addr())
	_, tlsPort, _ := net.SplitHostPort(tlsEcho.Addr())
	// live-mtls: the stand-in requires a client certificate and records
	// which one each handshake presented. Both client certificates carry
	// the same name; only the certificate itself tells them apart.
	clientCA, err := testpki.NewCA(testpki.CommonName("live client CA"))
	require.NoError(t, err)
	client1, err := clientCA.Issue(testpki.ClientAuth(), testpki.CommonName("live client"))
	require.NoError(t, err)
	client2, err := clientCA.Issue(testpki.ClientAuth(), testpki.CommonName("live client"))
	require.NoError(t, err)
	var handshakes upstream.HandshakeLog
	mtlsEcho, err := upstream.StartTCPEcho(upstream.Addr("127.0.0.1:0"), upstream.TLS(leaf.TLS),
		upstream.RequireClientCertFrom(clientCA.Pool()), upstream.RecordHandshakes(&handshakes))
	require.NoError(t, err)
	t.Cleanup(func() { _ = mtlsEcho.Close() })
	_, mtlsPort, _ := net.SplitHostPort(mtlsEcho.Addr())

	secret := func(pem []byte) string {
		return "type: Secret\nname: rotating-ca\nmesh: default\ndata: " + b64(pem) + "\n"
	}
	drop := filepath.Join(t.TempDir(), "drop")
	require.NoError(t, os.MkdirAll(drop, 0o755))
	writeFile(t, filepath.Join(drop, "a.yaml"), mesFile("live-a", plainPort, ""))
	writeFile(t, filepath.Join(drop, "rot.yaml"), mesFile("live-rot", tlsPort,
		"  tls:\n    enabled: true\n    verification: {serverName: rotate.test, caCert: {secret: rotating-ca}}\n"))
	writeFile(t, filepath.Join(drop, "secret.yaml"), secret(ca1.CertPEM))
	writeFile(t, filepath.Join(drop, "mtls.yaml"), mesFile("live-mtls", mtlsPort,
		"  tls:\n    enabled: true\n    verification: {serverName: rotate.test, caCert: {inline: "+b64(ca1.CertPEM)+"},\n"+
			"      clientCert: {secret: live-client-cert}, clientKey: {secret: live-client-key}}\n"))
	writeFile(t, filepath.Join(drop, "client-secrets.yaml"), clientSecrets(client1))
	outbounds := map[int]string{22000: "live-a", 22001: "live-rot", 22003: "live-mtls"}
	writeFile(t, filepath.Join(drop, "dataplane.yaml"), liveDataplane(outbounds))

	stateDir := filepath.Join(t.TempDir(), "state")
	m := startMesh(t, drop, meshOpts{nodeID: "default.live", stateDir: stateDir})
	m.waitListener(t, "127.0.0.1:22000")
	m.waitListener(t, "127.0.0.1:22001")
	m.waitListener(t, "127.0.0.1:22003")
	c, _, err := dialEcho("127.0.0.1:22000", "hello a")
	require.NoError(t, err)
	c.Close()

	t.Run("new file reachable without restarting Envoy", func(t *testing.T) {
		pid := m.envoy.Pid()
		writeFile(t, filepath.Join(drop, "b.yaml"), mesFile("live-b", plainPort, ""))
		outbounds[22002] = "live-b"
		writeFile(t, filepath.Join(drop, "dataplane.yaml"), liveDataplane(outbounds))
		eventually(t, 20*time.Second, "live-b reachable", func() error {
			c, _, err := dialEcho("127.0.0.1:22002", "hello b")
			if err == nil {
				c.Close()
			}
			return err
		})
		assert.Equal(t, pid, m.envoy.Pid(), "same Envoy process")
	})

	t.Run("broken file changes nothing that works", func(t *testing.T) {
		before := m.envoy.StatValue("listener_manager.lds.update_success")
		writeFile(t, filepath.Join(drop, "a.yaml"), "type: MeshExternalService\nname: live-a\nmesh: default\nspec:\n  match: {port: [\n")
		writeFile(t, filepath.Join(drop, "b.yaml"), mesFile("live-b", plainPort, "")+"  bogus: 1\n")
		eventually(t, 20*time.Second, "meshext reports the broken files", func() error {
			st := m.status(t)
			if !strings.Contains(st, "a.yaml") || !strings.Contains(st, "bogus") {
				return fmt.Errorf("status has no problem for a.yaml / bogus: %s", st)
			}
			return nil
		})
		for _, a := range []string{"127.0.0.1:22000", "127.0.0.1:22002"} {
			c, _, err := dialEcho(a, "still here")
			require.NoError(t, err, a)
			c.Close()
		}
		assert.Equal(t, before, m.envoy.StatValue("listener_manager.lds.update_success"), "no listener update pushed for bad input")
		writeFile(t, filepath.Join(drop, "a.yaml"), mesFile("live-a", plainPort, ""))
		writeFile(t, filepath.Join(drop, "b.yaml"), mesFile("live-b", plainPort, ""))
	})

	t.Run("CA rotation keeps open connections and applies to new ones", func(t *testing.T) {
		conn, r, err := dialEcho("127.0.0.1:22001", "before rotation")
		require.NoError(t, err)
		defer conn.Close()
		modified := m.envoy.StatValue("cluster_manager.cluster_modified")

		// Trust only CA 2: the server's CA 1 certificate no longer verifies.
		// Refused for that reason, not any: Envoy counts a failed
		// certificate verification on the cluster.
		verifyErrors := "cluster.default_live-rot__default_extsvc_80.ssl.fail_verify_error"
		verifyErrorsBefore := m.counter(t, verifyErrors)
		writeFile(t, filepath.Join(drop, "secret.yaml"), secret(ca2.CertPEM))
		eventually(t, 20*time.Second, "new connections use the rotated CA (refused)", func() error {
			c, _, err := dialEcho("127.0.0.1:22001", "probe")
			if err == nil {
				c.Close()
				return fmt.Errorf("still accepted with CA 1 trusted")
			}
			if n := m.counter(t, verifyErrors); n <= verifyErrorsBefore {
				return fmt.Errorf("refused (%v), but not by certificate verification: %s = %d", err, verifyErrors, n)
			}
			return nil
		})
		require.NoError(t, echoOnce(conn, r, "open connection survives"), "existing traffic keeps working")

		// Trust both: new connections work again.
		writeFile(t, filepath.Join(drop, "secret.yaml"), secret(append(append([]byte{}, ca2.CertPEM...), ca1.CertPEM...)))
		eventually(t, 20*time.Second, "new connections verify with the new bundle", func() error {
			c, _, err := dialEcho("127.0.0.1:22001", "after rotation")
			if err == nil {
				c.Close()
			}
			return err
		})
		require.NoError(t, echoOnce(conn, r, "still open"))
		assert.Equal(t, modified, m.envoy.StatValue("cluster_manager.cluster_modified"), "rotation went through SDS, not a cluster rebuild")
	})

	t.Run("client certificate rotation keeps open connections and applies to new handshakes", func(t *testing.T) {
		conn, r, err := dialEcho("127.0.0.1:22003", "before client rotation")
		require.NoError(t, err)
		defer conn.Close()
		hs := handshakes.All()
		require.NotEmpty(t, hs)
		require.Equal(t, certSHA256(client1), hs[len(hs)-1].ClientCertSHA256, "the stand-in saw the first client certificate")
		modified := m.envoy.StatValue("cluster_manager.cluster_modified")

		writeFile(t, filepath.Join(drop, "client-secrets.yaml"), clientSecrets(client2))
		// Each probe is a new connection, so Envoy makes a new upstream handshake.
		eventually(t, 20*time.Second, "a new handshake presents the rotated client certificate", func() error {
			seen := len(handshakes.All())
			c, _, err := dialEcho("127.0.0.1:22003", "probe")
			if err != nil {
				return err
			}
			c.Close()
			hs := handshakes.All()
			if len(hs) == seen {
				return fmt.Errorf("the probe made no new handshake")
			}
			if last := hs[len(hs)-1]; last.ClientCertSHA256 != certSHA256(client2) {
				return fmt.Errorf("the new handshake presented certificate %s (resumed: %v), not the rotated %s", last.ClientCertSHA256, last.Resumed, certSHA256(client2))
			}
			return nil
		})
		require.NoError(t, echoOnce(conn, r, "open connection survives the rotation"))
		assert.Equal(t, modified, m.envoy.StatValue("cluster_manager.cluster_modified"), "rotation went through SDS, not a cluster rebuild")
	})

	t.Run("restart keeps every VIP", func(t *testing.T) {
		before := vipsOf(t, m.status(t))
		require.Len(t, before, 4)
		m.run.Stop()
		m.startRun(t, meshext(t), meshOpts{nodeID: "default.live", stateDir: stateDir})
		eventually(t, 20*time.Second, "status after restart", func() error {
			code, body, err := httpGet("http://" + m.statusAddr + "/status")
			if err != nil || code != 200 {
				return fmt.Errorf("%d %v", code, err)
			}
			if got := vipsOf(t, body); len(got) != 4 {
				return fmt.Errorf("services: %v", got)
			}
			return nil
		})
		assert.Equal(t, before, vipsOf(t, m.status(t)))
		c, _, err := dialEcho("127.0.0.1:22000", "after restart")
		require.NoError(t, err)
		c.Close()
	})
}

package e2e

import (
	"bufio"
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

// TestLiveChanges: a new file becomes reachable without restarting Envoy, a
// broken file changes nothing that works, a CA rotation through a Secret keeps
// open connections and applies to new ones, and a restart keeps every VIP.
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

	secret := func(pem []byte) string {
		return "type: Secret\nname: rotating-ca\nmesh: default\ndata: " + b64(pem) + "\n"
	}
	drop := filepath.Join(t.TempDir(), "drop")
	require.NoError(t, os.MkdirAll(drop, 0o755))
	writeFile(t, filepath.Join(drop, "a.yaml"), mesFile("live-a", plainPort, ""))
	writeFile(t, filepath.Join(drop, "rot.yaml"), mesFile("live-rot", tlsPort,
		"  tls:\n    enabled: true\n    verification: {serverName: rotate.test, caCert: {secret: rotating-ca}}\n"))
	writeFile(t, filepath.Join(drop, "secret.yaml"), secret(ca1.CertPEM))
	outbounds := map[int]string{22000: "live-a", 22001: "live-rot"}
	writeFile(t, filepath.Join(drop, "dataplane.yaml"), liveDataplane(outbounds))

	stateDir := filepath.Join(t.TempDir(), "state")
	m := startMesh(t, drop, meshOpts{nodeID: "default.live", stateDir: stateDir})
	m.waitListener(t, "127.0.0.1:22000")
	m.waitListener(t, "127.0.0.1:22001")
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
		writeFile(t, filepath.Join(drop, "secret.yaml"), secret(ca2.CertPEM))
		eventually(t, 20*time.Second, "new connections use the rotated CA (refused)", func() error {
			c, _, err := dialEcho("127.0.0.1:22001", "probe")
			if err == nil {
				c.Close()
				return fmt.Errorf("still accepted with CA 1 trusted")
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

	t.Run("restart keeps every VIP", func(t *testing.T) {
		before := vipsOf(t, m.status(t))
		require.Len(t, before, 3)
		m.run.Stop()
		m.startRun(t, meshext(t), meshOpts{nodeID: "default.live", stateDir: stateDir})
		eventually(t, 20*time.Second, "status after restart", func() error {
			code, body, err := httpGet("http://" + m.statusAddr + "/status")
			if err != nil || code != 200 {
				return fmt.Errorf("%d %v", code, err)
			}
			if got := vipsOf(t, body); len(got) != 3 {
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

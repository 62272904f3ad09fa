package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testpki"
	"github.com/meshext/meshext/e2e/upstream"
)

// TestAllowRenegotiation: a TLS 1.2 server renegotiates mid-connection. With
// tls.allowRenegotiation: true (rendered by meshext) the connection goes on;
// with the default (false) Envoy refuses and the connection ends.
func TestAllowRenegotiation(t *testing.T) {
	openssl := testenv.Tool(t, "openssl")
	ca, err := testpki.NewCA(testpki.CommonName("reneg CA"))
	require.NoError(t, err)
	leaf, err := ca.Issue(testpki.ServerAuth(), testpki.DNSNames("reneg.test"), testpki.Key(testpki.RSA2048))
	require.NoError(t, err)

	drop := filepath.Join(t.TempDir(), "drop")
	require.NoError(t, os.MkdirAll(drop, 0o755))
	servers := map[bool]*upstream.RenegotiatingServer{}
	outbound := map[bool]string{true: "127.0.0.1:22100", false: "127.0.0.1:22101"}
	for _, allow := range []bool{true, false} {
		srv, err := upstream.StartRenegotiatingServer(openssl, "127.0.0.1", leaf)
		require.NoError(t, err)
		t.Cleanup(func() { _ = srv.Close() })
		servers[allow] = srv
		_, port, _ := net.SplitHostPort(srv.Addr())
		writeFile(t, filepath.Join(drop, fmt.Sprintf("reneg-%v.yaml", allow)), mesFile(fmt.Sprintf("reneg-%v", allow), port,
			fmt.Sprintf("  tls:\n    enabled: true\n    allowRenegotiation: %v\n    version: {max: TLS12}\n    verification: {serverName: reneg.test, caCert: {inline: %s}}\n", allow, b64(ca.CertPEM))))
	}
	writeFile(t, filepath.Join(drop, "dataplane.yaml"), `type: Dataplane
mesh: default
name: reneg
networking:
  address: 127.0.0.1
  transparentProxying: {redirectPortOutbound: 15104}
  outbound:
    - port: 22100
      backendRef: {kind: MeshExternalService, name: reneg-true}
    - port: 22101
      backendRef: {kind: MeshExternalService, name: reneg-false}
`)
	m := startMesh(t, drop, meshOpts{nodeID: "default.reneg"})
	for _, allow := range []bool{true, false} {
		m.waitListener(t, outbound[allow])
	}
	for _, allow := range []bool{true, false} {
		t.Run(fmt.Sprintf("allowRenegotiation=%v", allow), func(t *testing.T) {
			srv := servers[allow]
			conn, err := net.DialTimeout("tcp", outbound[allow], 3*time.Second)
			require.NoError(t, err)
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
			_, err = conn.Write([]byte("hello before\n"))
			require.NoError(t, err)
			require.NoError(t, srv.WaitOutput("hello before", 10*time.Second))
			require.NoError(t, srv.Renegotiate())
			time.Sleep(300 * time.Millisecond) // let the renegotiation round trip happen before the next record
			_ = srv.Send("after renegotiation")
			line, err := bufio.NewReader(conn).ReadString('\n')
			if allow {
				require.NoError(t, err)
				assert.Equal(t, "after renegotiation\n", line)
			} else {
				assert.Error(t, err, "Envoy refuses the renegotiation: the connection ends, got %q", line)
			}
		})
	}
}

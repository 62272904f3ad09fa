package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/meshca"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/pki"
	meshextrun "github.com/meshext/meshext/controller/run"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/netns"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
	"github.com/meshext/meshext/e2e/testpki"
	"github.com/meshext/meshext/e2e/upstream"
)

// Kuma's egress path on loopback: `meshext run` serves two workload Envoys
// (Dataplanes "web" and "batch") and two ZoneEgress Envoys, each a process of
// its own on its own 127.0.0.x address, from one drop directory with mesh
// mTLS on. Every request goes workload Envoy -> (mTLS, SNI) -> egress Envoy ->
// stand-in upstream. The acceptance suite in network namespaces drives the
// same commands and YAML (see README "Egress through ZoneEgress").

// egressEnv is the running set-up.
type egressEnv struct {
	bin, dir, drop, state, xds string
	xdsMode                    string // "file" or "ads"
	run                        *netns.Proc
	envoys                     map[string]*envoyproc.Proc // by node id
	bootstraps                 map[string]string          // by node id
	modEnv                     []string
	// Outbound addresses of the workloads, by Dataplane then service.
	out map[string]map[string]string
	// egressAddr by ZoneEgress name.
	egressAddr map[string]string
	upstreams  map[string]*upstream.Server
	upstreamCA *testpki.CA
}

const egressMesh = `type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
routing:
  zoneEgress: true
`

func egressZone(name, addr string, admin int) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`type: ZoneEgress
name: %s
networking:
  address: %s
  port: %s
  admin:
    port: %d
`, name, host, port, admin)
}

func egressDataplane(name string, outs map[string]string, extraTags string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "type: Dataplane\nmesh: default\nname: %s\nnetworking:\n  address: 127.0.0.1\n  inbound:\n    - port: %d\n      tags:\n        kuma.io/service: %s\n%s  outbound:\n",
		name, 20000+len(name), name, extraTags)
	for _, svc := range []string{"mes-tcp", "mes-http", "mes-https", "mes-grpc"} {
		_, port, _ := net.SplitHostPort(outs[svc])
		fmt.Fprintf(&b, "    - port: %s\n      backendRef: {kind: MeshExternalService, name: %s}\n", port, svc)
	}
	return b.String()
}

func egressServices(ups map[string]*upstream.Server) string {
	ep := func(name string) (string, string) {
		h, p, _ := net.SplitHostPort(ups[name].Addr())
		return h, p
	}
	th, tp := ep("tcp")
	hh, hp := ep("http")
	sh, sp := ep("https")
	gh, gp := ep("grpc")
	return fmt.Sprintf(`type: MeshExternalService
name: mes-tcp
mesh: default
spec:
  match: {type: HostnameGenerator, port: 4242, protocol: tcp}
  endpoints: [{address: %s, port: %s}]
---
type: MeshExternalService
name: mes-http
mesh: default
spec:
  match: {type: HostnameGenerator, port: 80, protocol: http}
  endpoints: [{address: %s, port: %s}]
---
type: MeshExternalService
name: mes-https
mesh: default
spec:
  match: {type: HostnameGenerator, port: 443, protocol: http}
  endpoints: [{address: %s, port: %s}]
  tls:
    enabled: true
    verification:
      serverName: httpbin.org
---
type: MeshExternalService
name: mes-grpc
mesh: default
spec:
  match: {type: HostnameGenerator, port: 9000, protocol: grpc}
  endpoints: [{address: %s, port: %s}]
`, th, tp, hh, hp, sh, sp, gh, gp)
}

// allowWebRules lets only web through every egress (Kuma 2.12 rules).
const allowWebRules = `type: MeshTrafficPermission
name: allow-web
mesh: default
spec:
  targetRef: {kind: Mesh}
  rules:
    - default:
        allow:
          - spiffeID: {type: Exact, value: "spiffe://default/web"}
`

func freeOn(t *testing.T, ip string) string {
	t.Helper()
	return net.JoinHostPort(ip, strconv.Itoa(testnet.FreePort(t)))
}

// startEgressEnv starts the stand-ins, `meshext run` and the four Envoys.
// plugin is meshext run's --plugin; xds its --xds (file, or ads over the
// default unix socket).
func startEgressEnv(t *testing.T, plugin, xdsMode string) *egressEnv {
	t.Helper()
	e := &egressEnv{bin: meshext(t), dir: t.TempDir(), xdsMode: xdsMode, envoys: map[string]*envoyproc.Proc{}, bootstraps: map[string]string{},
		out: map[string]map[string]string{}, egressAddr: map[string]string{}, upstreams: map[string]*upstream.Server{}}
	testenv.Envoy(t)
	e.drop, e.state, e.xds = filepath.Join(e.dir, "drop"), filepath.Join(e.dir, "state"), filepath.Join(e.dir, "xds")
	require.NoError(t, os.MkdirAll(e.drop, 0o755))

	// Stand-ins, on addresses no workload dials itself.
	var err error
	e.upstreamCA, err = testpki.NewCA()
	require.NoError(t, err)
	serverCert, err := e.upstreamCA.Issue(testpki.DNSNames("httpbin.org"), testpki.ServerAuth())
	require.NoError(t, err)
	caFile := filepath.Join(e.dir, "upstream-ca.pem")
	require.NoError(t, e.upstreamCA.WriteCertPEM(caFile))
	start := func(name string, f func(...upstream.Option) (*upstream.Server, error), opts ...upstream.Option) {
		s, err := f(opts...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		e.upstreams[name] = s
	}
	start("tcp", upstream.StartTCPEcho, upstream.Addr(freeOn(t, "127.0.0.11")))
	start("http", upstream.StartHTTPBin, upstream.Addr(freeOn(t, "127.0.0.12")))
	start("https", upstream.StartHTTPBin, upstream.Addr(freeOn(t, "127.0.0.12")), upstream.TLS(serverCert.TLS))
	start("grpc", upstream.StartGRPCBin, upstream.Addr(freeOn(t, "127.0.0.13")))

	e.egressAddr["egress-1"] = freeOn(t, "127.0.0.2")
	e.egressAddr["egress-2"] = freeOn(t, "127.0.0.3")
	for _, dp := range []string{"web", "batch"} {
		e.out[dp] = map[string]string{}
		for _, svc := range []string{"mes-tcp", "mes-http", "mes-https", "mes-grpc"} {
			e.out[dp][svc] = freeOn(t, "127.0.0.1")
		}
	}
	e.write(t, "mesh.yaml", egressMesh)
	e.write(t, "services.yaml", egressServices(e.upstreams))
	e.write(t, "egress-1.yaml", egressZone("egress-1", e.egressAddr["egress-1"], testnet.FreePort(t)))
	e.write(t, "egress-2.yaml", egressZone("egress-2", e.egressAddr["egress-2"], testnet.FreePort(t)))
	e.write(t, "web.yaml", egressDataplane("web", e.out["web"], ""))
	e.write(t, "batch.yaml", egressDataplane("batch", e.out["batch"], ""))
	e.write(t, "mtp.yaml", allowWebRules)
	e.write(t, "access-log.yaml", e2eAccessLog)

	args := []string{"run", "--dir", e.drop, "--state-dir", e.state, "--xds", xdsMode,
		"--status-listen", "127.0.0.1:" + strconv.Itoa(testnet.FreePort(t)), "--debounce", "100ms", "--plugin", plugin}
	if xdsMode == "file" {
		args = append(args, "--xds-dir", e.xds)
	}
	cmd := exec.Command(e.bin, args...)
	cmd.Env = append(os.Environ(), "KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH="+caFile)
	e.run = netns.StartCmd(t, "meshext-run", cmd)
	e.modEnv = envoyModuleEnv(t)
	for _, node := range []string{".egress-1", ".egress-2", "default.web", "default.batch"} {
		e.startEnvoy(t, node)
	}
	for name, addr := range e.egressAddr {
		e.waitListening(t, names.ZoneEgressNodeID(name), addr)
	}
	for dp, outs := range e.out {
		for _, a := range outs {
			e.waitListening(t, "default."+dp, a)
		}
	}
	return e
}

func (e *egressEnv) write(t *testing.T, name, content string) {
	t.Helper()
	writeFile(t, filepath.Join(e.drop, name), content)
}

// startEnvoy bootstraps one node with `meshext bootstrap` (ZoneEgresses
// by --zone-egress) and starts its Envoy.
func (e *egressEnv) startEnvoy(t *testing.T, node string) {
	t.Helper()
	ready := filepath.Join(e.xds, names.PathElement(node), "lds.json")
	if e.xdsMode == "ads" {
		ready = meshextrun.DefaultADSSocket(e.state)
	}
	eventually(t, 30*time.Second, "meshext run serves "+node, func() error {
		if _, err := os.Stat(ready); err != nil {
			return fmt.Errorf("%v; meshext log: %s", err, envoyproc.Tail(e.run.LogPath, 1500))
		}
		return nil
	})
	boot, ok := e.bootstraps[node]
	if !ok {
		boot = filepath.Join(e.dir, names.PathElement(node)+"-bootstrap.json")
		args := []string{"bootstrap", "--xds", "file", "--xds-dir", e.xds, "--admin-port", strconv.Itoa(testnet.FreePort(t)), "--out", boot}
		if e.xdsMode == "ads" {
			args = []string{"bootstrap", "--xds", "ads", "--ads-address", "unix:" + meshextrun.DefaultADSSocket(e.state), "--admin-port", strconv.Itoa(testnet.FreePort(t)), "--out", boot}
		}
		if z, isEgress := strings.CutPrefix(node, "."); isEgress {
			args = append(args, "--zone-egress", z)
		} else {
			args = append(args, "--node", node)
		}
		out, err := run(t, 30*time.Second, "", e.bin, args...)
		require.NoError(t, err, out)
		e.bootstraps[node] = boot
	}
	o := envoyproc.Pinned(testenv.Envoy(t), boot, e.dir, names.PathElement(node), e.modEnv)
	o.Args = append(o.Args, "--file-flush-interval-msec", "100")
	p, err := envoyproc.Start(o)
	require.NoError(t, err)
	e.envoys[node] = p
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- envoy %s log (tail) ---\n%s", node, p.Tail(5000))
		}
		p.Stop()
	})
}

func (e *egressEnv) waitListening(t *testing.T, node, addr string) {
	t.Helper()
	eventually(t, 30*time.Second, node+" listens on "+addr, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// get is one HTTP GET through a workload's outbound for svc.
func (e *egressEnv) get(t *testing.T, c *http.Client, dp, svc, path string) (int, string) {
	t.Helper()
	resp, err := c.Get("http://" + e.out[dp][svc] + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, b.String()
}

// echo says whether a line sent through dp's mes-tcp outbound came back,
// on a fresh connection.
func (e *egressEnv) echo(dp, line string) bool { return e.echoErr(dp, line) == nil }

func (e *egressEnv) echoErr(dp, line string) error {
	c, err := net.DialTimeout("tcp", e.out[dp]["mes-tcp"], 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return echoOnce(c, bufio.NewReader(c), line)
}

// grpcList runs grpcurl list through dp's mes-grpc outbound.
func (e *egressEnv) grpcList(t *testing.T, grpcurl, dp string) (string, error) {
	t.Helper()
	return run(t, 20*time.Second, "", grpcurl, "-plaintext", e.out[dp]["mes-grpc"], "list")
}

// meshCA is the mesh CA meshext run made in its state directory.
func (e *egressEnv) meshCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.LoadCA(meshca.CADir(e.state, "default", "ca-1"))
	require.NoError(t, err)
	return ca
}

// dialFunc makes a connection from where a scenario's workloads are
// (loopback, or the workload namespace).
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// dialEgressTLS opens TLS with dial straight to the egress at addr, as a
// workload's Envoy would (or a workload skipping it), with cert (nil: none)
// for the SNI of mes-http, checking the egress's identity against ca.
func dialEgressTLS(dial dialFunc, addr string, ca *pki.CA, cert *tls.Certificate) (*tls.Conn, error) {
	cfg := &tls.Config{
		ServerName: names.SNI("mes-http", "default", "mes", 80),
		RootCAs:    ca.Pool(),
		MinVersion: tls.VersionTLS12,
		// The egress's certificate names no host: check its SPIFFE ID as
		// the workloads' Envoys do.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			opts := x509.VerifyOptions{Roots: ca.Pool(), Intermediates: x509.NewCertPool()}
			if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
				return err
			}
			id, err := pki.IdentityOf(cs.PeerCertificates[0])
			if err != nil || id.SPIFFEID != "spiffe://default/zone-egress" {
				return fmt.Errorf("egress identity %v %v", id, err)
			}
			return nil
		},
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return tlsOver(dial, addr, cfg)
}

// tlsOver is a TLS client handshake on a connection from dial, bounded.
func tlsOver(dial dialFunc, addr string, cfg *tls.Config) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	// TLS 1.3 reports a refused client certificate only on the first read.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, nil
}

// checkEgressClientCertificates dials the egress at addr with dial as a
// client that skips the workload's Envoy: with another CA's certificate
// for spiffe://default/web, or none, it is refused; the mesh CA's (ca)
// certificate for web gets a 200 from mes-http; an SNI no service has is
// closed.
func checkEgressClientCertificates(t *testing.T, dial dialFunc, addr string, ca *pki.CA) {
	t.Helper()
	other, err := testpki.NewCA()
	require.NoError(t, err)
	forged, err := other.Issue(testpki.URIs("spiffe://default/web"), testpki.ClientAuth())
	require.NoError(t, err)
	for name, cert := range map[string]*tls.Certificate{"another CA": &forged.TLS, "no certificate": nil} {
		c, err := dialEgressTLS(dial, addr, ca, cert)
		if err == nil {
			_, err = rawGet(c)
			c.Close()
		}
		assert.Error(t, err, name)
	}
	// The mesh CA's own certificate for web gets through: the refusal
	// above is about the certificate, not the harness.
	u, _ := pki.SPIFFEID("default", "web")
	good, err := ca.Issue(pki.LeafOptions{URIs: []*url.URL{u}})
	require.NoError(t, err)
	tc := good.TLSCertificate()
	c, err := dialEgressTLS(dial, addr, ca, &tc)
	require.NoError(t, err)
	status, err := rawGet(c)
	c.Close()
	require.NoError(t, err)
	assert.Contains(t, status, "200")
	// An SNI no service has: no filter chain, closed.
	cfg := &tls.Config{ServerName: "unknown.default.mes", InsecureSkipVerify: true, Certificates: []tls.Certificate{tc}} //nolint:gosec // the handshake must fail anyway
	if c, err := tlsOver(dial, addr, cfg); err == nil {
		_, err = rawGet(c)
		c.Close()
		assert.Error(t, err, "unknown SNI")
	}
}

// egressTraffic is how a failover scenario reaches mes-http and mes-tcp as
// the allowed workload, each call on a fresh connection to its Envoy.
type egressTraffic struct {
	get  func() (int, string)    // GET mes-http /get: status and body
	echo func(line string) error // one line through mes-tcp
}

// checkEgressFailover: with egress-1 of two killed, requests and
// connections keep passing (retried on egress-2); with egress-2 killed
// too, nothing leaves (503, TCP closed); egress-2 restarted, traffic
// resumes. kill and restart take a ZoneEgress name.
func checkEgressFailover(t *testing.T, tr egressTraffic, kill, restart func(name string)) {
	t.Helper()
	kill("egress-1")
	for i := 0; i < 8; i++ {
		code, body := tr.get()
		require.Equal(t, 200, code, "request %d after egress-1 died: %s", i, body)
		require.NoError(t, tr.echo(fmt.Sprintf("tcp %d", i)), "tcp connection %d after egress-1 died", i)
	}
	kill("egress-2")
	code, body := tr.get()
	assert.Equal(t, 503, code, "no egress: fail closed; %s", body)
	assert.Error(t, tr.echo("nothing"), "no egress: tcp closed")
	restart("egress-2")
	eventually(t, 40*time.Second, "traffic resumes through the restarted egress-2", func() error {
		if code, body := tr.get(); code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return tr.echo("back")
	})
}

// rawGet sends one HTTP/1.1 request over c and returns the status line.
func rawGet(c net.Conn) (string, error) {
	if _, err := c.Write([]byte("GET /get HTTP/1.1\r\nHost: httpbin\r\nConnection: close\r\n\r\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// TestEgressPathLoopback proves on loopback, with the meshext Go filter at
// the egresses: mTLS and SNI routing for every protocol, authorization by
// the caller's SPIFFE ID (HTTP 403 naming the policy, gRPC status 7, TCP
// closed), refusal of clients with another CA's certificate or none, a
// policy change on an open connection, rotation of a workload's certificate
// under an open connection, and two egresses with one killed (then both,
// then one back).
func TestEgressPathLoopback(t *testing.T) {
	grpcurl := testenv.Tool(t, "grpcurl")
	e := startEgressEnv(t, "on", "file")
	keep := &http.Client{Timeout: 10 * time.Second}

	t.Run("web reaches every service through an egress", func(t *testing.T) {
		code, body := e.get(t, keep, "web", "mes-http", "/get")
		require.Equal(t, 200, code, body)
		code, body = e.get(t, keep, "web", "mes-https", "/get")
		require.Equal(t, 200, code, body)
		assert.Contains(t, body, "https://", "the egress originated TLS to the upstream")
		assert.True(t, e.echo("web", "hello"), "tcp echo")
		out, err := e.grpcList(t, grpcurl, "web")
		require.NoError(t, err, out)
		assert.Contains(t, out, upstream.GRPCBinService)
		// The egresses saw web's identity on SNI-routed chains.
		eventually(t, 10*time.Second, "egress access logs name web", func() error {
			logs := e.envoys[".egress-1"].LogText() + e.envoys[".egress-2"].LogText()
			for _, svc := range []string{"mes-http", "mes-tcp", "mes-grpc"} {
				if !strings.Contains(logs, "sni="+names.SNI(svc, "default", "mes", map[string]uint32{"mes-http": 80, "mes-tcp": 4242, "mes-grpc": 9000}[svc])) {
					return fmt.Errorf("no %s request in the egress logs", svc)
				}
			}
			if !strings.Contains(logs, `peer="spiffe://default/web,kuma://kuma.io/service/web"`) {
				return fmt.Errorf("no request from web's identity in the egress logs")
			}
			return nil
		})
	})

	t.Run("batch is refused at the egress: 403, gRPC 7, TCP closed", func(t *testing.T) {
		code, body := e.get(t, keep, "batch", "mes-http", "/get")
		assert.Equal(t, 403, code)
		assert.Contains(t, body, `from "batch" denied by MeshTrafficPermission rules "allow-web"`)
		out, err := e.grpcList(t, grpcurl, "batch")
		assert.Error(t, err)
		assert.Contains(t, out, "PermissionDenied", out)
		assert.False(t, e.echo("batch", "hello"), "tcp closed")
	})

	t.Run("a client with another CA's certificate, or none, is refused", func(t *testing.T) {
		var d net.Dialer
		checkEgressClientCertificates(t, d.DialContext, e.egressAddr["egress-1"], e.meshCA(t))
	})

	t.Run("a policy change applies on an open connection", func(t *testing.T) {
		// One keep-alive connection web -> workload Envoy; its connection to
		// the egress stays open too.
		tr := &http.Transport{MaxConnsPerHost: 1}
		c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
		defer tr.CloseIdleConnections()
		code, body := e.get(t, c, "web", "mes-http", "/get")
		require.Equal(t, 200, code, body)
		e.write(t, "mtp.yaml", strings.ReplaceAll(allowWebRules, "spiffe://default/web", "spiffe://default/nobody"))
		eventually(t, 20*time.Second, "web denied after the policy change", func() error {
			if code, body := e.get(t, c, "web", "mes-http", "/get"); code != 403 {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
		e.write(t, "mtp.yaml", allowWebRules)
		eventually(t, 20*time.Second, "web allowed again", func() error {
			if code, body := e.get(t, c, "web", "mes-http", "/get"); code != 200 {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	})

	t.Run("a rotated workload certificate does not break an open connection", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", e.out["web"]["mes-tcp"], 3*time.Second)
		require.NoError(t, err)
		defer conn.Close()
		r := bufio.NewReader(conn)
		require.NoError(t, echoOnce(conn, r, "before"))
		before := e.identitySerial(t, "default.web")
		// New tags: meshext run issues web a new certificate at once.
		e.write(t, "web.yaml", egressDataplane("web", e.out["web"], "        version: v2\n"))
		eventually(t, 20*time.Second, "web's certificate re-issued and used for new connections", func() error {
			if s := e.identitySerial(t, "default.web"); s == before {
				return fmt.Errorf("serial still %s", s)
			}
			if !e.echo("web", "new") {
				return fmt.Errorf("new connection failed")
			}
			logs := e.envoys[".egress-1"].LogText() + e.envoys[".egress-2"].LogText()
			if !strings.Contains(logs, "kuma://version/v2") {
				return fmt.Errorf("no connection with the new certificate (kuma://version/v2) at the egresses yet")
			}
			return nil
		})
		require.NoError(t, echoOnce(conn, r, "after"), "the connection opened before the rotation still works")
	})

	t.Run("two egresses, one killed: traffic continues; both: nothing leaves; one back: resumes", func(t *testing.T) {
		fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		tr := egressTraffic{
			get:  func() (int, string) { return e.get(t, fresh, "web", "mes-http", "/get") },
			echo: func(line string) error { return e.echoErr("web", line) },
		}
		checkEgressFailover(t, tr,
			func(name string) { e.envoys[names.ZoneEgressNodeID(name)].Kill() },
			func(name string) { e.startEnvoy(t, names.ZoneEgressNodeID(name)) })
	})
}

// TestEgressPathLoopbackNativeRBAC: the same decisions without Go in the
// egress Envoy (--plugin off): native HTTP RBAC (403, gRPC 7) and network
// RBAC (TCP closed), and the mesh default deny; config and identities over
// ADS (the default unix socket) instead of files.
func TestEgressPathLoopbackNativeRBAC(t *testing.T) {
	grpcurl := testenv.Tool(t, "grpcurl")
	e := startEgressEnv(t, "off", "ads")
	c := &http.Client{Timeout: 10 * time.Second}
	code, body := e.get(t, c, "web", "mes-http", "/get")
	require.Equal(t, 200, code, body)
	assert.True(t, e.echo("web", "hi"))
	out, err := e.grpcList(t, grpcurl, "web")
	require.NoError(t, err, out)

	code, _ = e.get(t, c, "batch", "mes-http", "/get")
	assert.Equal(t, 403, code)
	out, err = e.grpcList(t, grpcurl, "batch")
	assert.Error(t, err)
	assert.Contains(t, out, "PermissionDenied")
	assert.False(t, e.echo("batch", "hi"))

	// No policy and defaultForbidMeshExternalServiceAccess: nobody passes.
	require.NoError(t, os.Remove(filepath.Join(e.drop, "mtp.yaml")))
	e.write(t, "mesh.yaml", egressMesh+"  defaultForbidMeshExternalServiceAccess: true\n")
	eventually(t, 20*time.Second, "web denied by the mesh default", func() error {
		c := &http.Client{Timeout: 10 * time.Second}
		if code, body := e.get(t, c, "web", "mes-http", "/get"); code != 403 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	assert.False(t, e.echo("web", "hi"))
}

// identitySerial is the serial meshext run reports for node's certificate.
func (e *egressEnv) identitySerial(t *testing.T, node string) string {
	t.Helper()
	return identitySerial(t, e.state, node)
}

// identitySerial is the serial of node's certificate in the status of the
// meshext run with state directory state.
func identitySerial(t *testing.T, state, node string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "status.json"))
	require.NoError(t, err)
	var st struct {
		Identities []struct {
			Node, Serial string
		}
	}
	require.NoError(t, json.Unmarshal(b, &st))
	for _, id := range st.Identities {
		if id.Node == node {
			return id.Serial
		}
	}
	return ""
}

package render

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	meshextdns "github.com/meshext/meshext/controller/dns"
	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
	"github.com/meshext/meshext/e2e/testpki"
)

// tlsEchoServer accepts TLS and writes one line describing the handshake as
// the server saw it, then closes.
func tlsEchoServer(t *testing.T, cfg *tls.Config) int {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return testnet.Serve(t, l, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			return
		}
		st := tc.ConnectionState()
		client := "-"
		if len(st.PeerCertificates) > 0 {
			client = st.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprintf(c, "sni=%s alpn=%s version=%s client=%s\n", st.ServerName, orNone(st.NegotiatedProtocol), tls.VersionName(st.Version), client)
	})
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// startEnvoy runs Envoy on a static bootstrap until the test ends and waits
// until it is LIVE.
func startEnvoy(t *testing.T, envoy string, n *Node, adminPort int) *envoyproc.Proc {
	t.Helper()
	b, err := StaticBootstrap(n, BootstrapOptions{AdminPort: uint32(adminPort)})
	if err != nil {
		t.Fatal(err)
	}
	return startEnvoyBootstrap(t, envoy, b)
}

// readLine connects to the outbound listener and returns the first line, or "" if
// Envoy closed the connection without data (the upstream handshake failed).
func readLine(t *testing.T, port int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("dial outbound %d: %v", port, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// TestEnvoyOriginatesTLSAsRendered drives a real Envoy with rendered config
// against real TLS servers on loopback and checks, from the server's side,
// what each mode does: SNI, SAN and chain checks, version bounds, client
// certificates, and per-endpoint SNI.
func TestEnvoyOriginatesTLSAsRendered(t *testing.T) {
	envoy := testenv.Envoy(t)
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := testpki.NewCA(testpki.CommonName("someone else's CA"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.DNSNames("api.test", "localhost"), testpki.ServerAuth())
	if err != nil {
		t.Fatal(err)
	}
	strangerLeaf, err := otherCA.Issue(testpki.DNSNames("api.test"), testpki.ServerAuth())
	if err != nil {
		t.Fatal(err)
	}
	clientLeaf, err := ca.Issue(testpki.CommonName("meshext-client"), testpki.ClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	base := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	tls13 := tlsEchoServer(t, base)
	tls12 := func() int {
		c := base.Clone()
		c.MaxVersion = tls.VersionTLS12
		return tlsEchoServer(t, c)
	}()
	stranger := func() int {
		c := base.Clone()
		c.Certificates = []tls.Certificate{strangerLeaf.TLS}
		return tlsEchoServer(t, c)
	}()
	apiOnly := func() int {
		l, err := ca.Issue(testpki.DNSNames("api.test"), testpki.ServerAuth())
		if err != nil {
			t.Fatal(err)
		}
		c := base.Clone()
		c.Certificates = []tls.Certificate{l.TLS}
		return tlsEchoServer(t, c)
	}()
	ipSAN := func() int {
		l, err := ca.Issue(testpki.IPs("127.0.0.1"), testpki.ServerAuth())
		if err != nil {
			t.Fatal(err)
		}
		c := base.Clone()
		c.Certificates = []tls.Certificate{l.TLS}
		return tlsEchoServer(t, c)
	}()
	mtls := func() int {
		c := base.Clone()
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
		return tlsEchoServer(t, c)
	}()

	mk := func(mode string, f func(*model.TLS)) *model.TLS {
		tl := &model.TLS{Mode: mode, MinVersion: resource.TLSAuto, MaxVersion: resource.TLSAuto, CA: ca.CertPEM, CASource: "inline"}
		if f != nil {
			f(tl)
		}
		return tl
	}
	serverName := func(n string) func(*model.TLS) { return func(t *model.TLS) { t.ServerName = n } }
	cases := []struct {
		name     string
		protocol string
		endpoint string
		port     int
		tls      *model.TLS
		want     string // substring of the server's line; "" = connection must fail
		stat     string // cluster stat (after "cluster.<name>.") that must be > 0
	}{
		{"secured-servername-tls13-by-default", "tcp", "127.0.0.1", tls13, mk(resource.ModeSecured, serverName("api.test")), "sni=api.test alpn=none version=TLS 1.3 client=-", ""},
		{"secured-wrong-name-refused", "tcp", "127.0.0.1", tls13, mk(resource.ModeSecured, serverName("wrong.test")), "", "ssl.fail_verify_san"},
		{"secured-san-replaces-servername", "tcp", "127.0.0.1", tls13, mk(resource.ModeSecured, func(t *model.TLS) {
			t.ServerName = "wrong.test"
			t.SANs = []resource.SubjectAltName{{Type: resource.SANExact, Value: "api.test"}}
		}), "sni=wrong.test", ""},
		{"secured-untrusted-chain-refused", "tcp", "127.0.0.1", stranger, mk(resource.ModeSecured, serverName("api.test")), "", "ssl.fail_verify_error"},
		{"skipsan-keeps-servername-F8", "tcp", "127.0.0.1", tls13, mk(resource.ModeSkipSAN, serverName("wrong.test")), "sni=wrong.test", ""},
		{"skipsan-still-checks-chain", "tcp", "127.0.0.1", stranger, mk(resource.ModeSkipSAN, serverName("api.test")), "", "ssl.fail_verify_error"},
		{"skipca-accepts-untrusted-chain", "tcp", "127.0.0.1", stranger, mk(resource.ModeSkipCA, serverName("api.test")), "sni=api.test", ""},
		{"skipall-accepts-anything", "tcp", "127.0.0.1", stranger, mk(resource.ModeSkipAll, serverName("api.test")), "sni=api.test", ""},
		{"min-tls13-refuses-tls12-server-F2", "tcp", "127.0.0.1", tls12, mk(resource.ModeSecured, func(t *model.TLS) {
			t.ServerName, t.MinVersion = "api.test", resource.TLS13
		}), "", "ssl.connection_error"},
		{"max-tls12-is-honoured-F2", "tcp", "127.0.0.1", tls13, mk(resource.ModeSecured, func(t *model.TLS) {
			t.ServerName, t.MaxVersion = "api.test", resource.TLS12
		}), "version=TLS 1.2", ""},
		{"client-cert-presented", "tcp", "127.0.0.1", mtls, mk(resource.ModeSecured, func(t *model.TLS) {
			t.ServerName, t.ClientCert, t.ClientKey = "api.test", clientLeaf.CertPEM, clientLeaf.KeyPEM
		}), "client=meshext-client", ""},
		{"skipall-keeps-client-cert", "tcp", "127.0.0.1", mtls, mk(resource.ModeSkipAll, func(t *model.TLS) {
			t.ServerName, t.CA, t.ClientCert, t.ClientKey = "api.test", nil, clientLeaf.CertPEM, clientLeaf.KeyPEM
		}), "client=meshext-client", ""},
		{"no-client-cert-refused-by-mtls-server", "tcp", "127.0.0.1", mtls, mk(resource.ModeSecured, serverName("api.test")), "", "ssl.connection_error"},
		{"per-endpoint-sni-from-hostname-F5", "tcp", "localhost", tls13, mk(resource.ModeSecured, nil), "sni=localhost", ""},
		// The implicit SAN follows the SNI sent: a certificate without "localhost" fails.
		{"per-endpoint-san-checked-against-sni-F5", "tcp", "localhost", apiOnly, mk(resource.ModeSecured, nil), "", "ssl.fail_verify_san"},
		// An IP endpoint without serverName sends no SNI and is checked as an IP SAN.
		{"ip-endpoint-checked-as-ip-san", "tcp", "127.0.0.1", ipSAN, mk(resource.ModeSecured, nil), "sni= alpn=none", ""},
		{"ip-endpoint-without-ip-san-refused", "tcp", "127.0.0.1", tls13, mk(resource.ModeSecured, nil), "", "ssl.fail_verify_san"},
		// Envoy caveat, on purpose in the names: SkipCA keeps SAN matchers, but
		// ACCEPT_UNTRUSTED lets a SAN mismatch through and only counts it, and
		// with an untrusted chain it does not evaluate SANs at all.
		{"skipca-san-mismatch-counted-not-enforced-F3", "tcp", "127.0.0.1", tls13, mk(resource.ModeSkipCA, func(t *model.TLS) {
			t.ServerName = "api.test"
			t.SANs = []resource.SubjectAltName{{Type: resource.SANExact, Value: "nomatch.test"}}
		}), "sni=api.test", "ssl.fail_verify_san"},
		{"skipca-untrusted-chain-skips-san-check-F3", "tcp", "127.0.0.1", stranger, mk(resource.ModeSkipCA, func(t *model.TLS) {
			t.ServerName = "api.test"
			t.SANs = []resource.SubjectAltName{{Type: resource.SANExact, Value: "nomatch.test"}}
		}), "sni=api.test", "ssl.fail_verify_error"},
	}

	w := &model.World{Meshes: map[string]*resource.Mesh{}}
	dp := &resource.Dataplane{Meta: resource.Meta{Kind: resource.KindDataplane, Mesh: "default", Name: "live"}}
	dp.Networking.Address = "127.0.0.1"
	dp.Networking.TransparentProxying = &resource.TransparentProxying{RedirectPortOutbound: int64(testnet.FreePort(t))}
	listen := map[string]int{}
	for i, c := range cases {
		s := withTLS(svc(c.name, c.protocol, 443, ep(c.endpoint, uint32(c.port))), c.tls)
		s.VIP = netipFrom(i)
		w.Services = append(w.Services, s)
		p := testnet.FreePort(t)
		listen[c.name] = p
		dp.Networking.Outbound = append(dp.Networking.Outbound, resource.Outbound{Port: int64(p), BackendRef: &resource.BackendRef{Kind: "MeshExternalService", Name: c.name}})
	}
	w.Dataplanes = []*resource.Dataplane{dp}
	out := mustRender(t, w, Options{})
	for _, s := range w.Services {
		if s.Broken != "" {
			t.Fatalf("%s not rendered: %s", s.Name, s.Broken)
		}
	}
	if len(out.Warnings) > 0 {
		t.Fatalf("warnings: %v", out.Warnings)
	}
	admin := startEnvoy(t, envoy, out.Nodes["default.live"], testnet.FreePort(t))

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := readLine(t, listen[c.name])
			switch {
			case c.want == "" && got != "":
				t.Errorf("connection should have failed, server said %q", got)
			case c.want != "" && !strings.Contains(got, c.want):
				t.Errorf("server said %q, want it to contain %q", got, c.want)
			}
			if c.stat != "" {
				name := "cluster." + w.Service("default", c.name).ClusterName() + "." + c.stat
				if v := statValue(t, admin, name); v == 0 {
					t.Errorf("%s = 0, want > 0 (the failure must be the TLS check named)", name)
				}
			}
		})
	}
}

func netipFrom(i int) netip.Addr { return netip.AddrFrom4([4]byte{242, 1, byte(i >> 8), byte(i)}) }

// statValue reads one counter from Envoy's admin /stats (bounded retries: the
// counter lands on the main thread a moment after the connection closes).
func statValue(t *testing.T, e *envoyproc.Proc, name string) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		v, err := e.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0
}

// TestEnvoyHTTPUpstreamProtocolsAndHostRewrite checks, from a real HTTPS
// server that offers h2 and http/1.1, that an http service reaches it over
// HTTP/1.1 and http2/grpc over h2 (explicit ALPN, F6), and that the Host
// header is rewritten to a DNS endpoint's name.
func TestEnvoyHTTPUpstreamProtocolsAndHostRewrite(t *testing.T) {
	envoy := testenv.Envoy(t)
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.DNSNames("localhost"), testpki.ServerAuth())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "proto=%s alpn=%s host=%s sni=%s", r.Proto, r.TLS.NegotiatedProtocol, r.Host, r.TLS.ServerName)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, NextProtos: []string{"h2", "http/1.1"}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })
	port := uint32(l.Addr().(*net.TCPAddr).Port)

	cases := map[string]string{
		"http":  "proto=HTTP/1.1 alpn=http/1.1 host=localhost sni=localhost",
		"http2": "proto=HTTP/2.0 alpn=h2 host=localhost sni=localhost",
	}
	w := &model.World{Meshes: map[string]*resource.Mesh{}}
	dp := &resource.Dataplane{Meta: resource.Meta{Kind: resource.KindDataplane, Mesh: "default", Name: "live"}}
	dp.Networking.TransparentProxying = &resource.TransparentProxying{RedirectPortOutbound: int64(testnet.FreePort(t))}
	listen := map[string]int{}
	i := 0
	for proto := range cases {
		tl := &model.TLS{Mode: resource.ModeSecured, MinVersion: resource.TLSAuto, MaxVersion: resource.TLSAuto, CA: ca.CertPEM}
		s := withTLS(svc("web-"+proto, proto, 443, ep("localhost", port)), tl)
		s.VIP = netipFrom(i)
		i++
		w.Services = append(w.Services, s)
		listen[proto] = testnet.FreePort(t)
		dp.Networking.Outbound = append(dp.Networking.Outbound, resource.Outbound{Port: int64(listen[proto]), BackendRef: &resource.BackendRef{Kind: "MeshExternalService", Name: s.Name}})
	}
	w.Dataplanes = []*resource.Dataplane{dp}
	out := mustRender(t, w, Options{})
	startEnvoy(t, envoy, out.Nodes["default.live"], testnet.FreePort(t))
	client := &http.Client{Timeout: 10 * time.Second}
	for proto, want := range cases {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", listen[proto]))
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("%s: %d %q, want 200 %q", proto, resp.StatusCode, body, want)
		}
	}
}

// TestEnvoyResolvesThroughUpstreamDNS points Options.UpstreamDNS at meshext's
// embedded DNS server: a name only that server knows resolves, Envoy connects
// with the name as SNI, and the certificate is checked against it.
func TestEnvoyResolvesThroughUpstreamDNS(t *testing.T) {
	envoy := testenv.Envoy(t)
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 api.upstream.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := meshextdns.New(meshextdns.Config{Listen: "127.0.0.1:0", HostsFile: hosts, Zones: []string{"upstream.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.DNSNames("api.upstream.test"), testpki.ServerAuth())
	if err != nil {
		t.Fatal(err)
	}
	port := tlsEchoServer(t, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})

	tl := &model.TLS{Mode: resource.ModeSecured, MinVersion: resource.TLSAuto, MaxVersion: resource.TLSAuto, CA: ca.CertPEM}
	s := withTLS(svc("dns", "tcp", 443, ep("api.upstream.test", uint32(port))), tl)
	w := world(s)
	outbound := testnet.FreePort(t)
	dp := &resource.Dataplane{Meta: resource.Meta{Kind: resource.KindDataplane, Mesh: "default", Name: "live"}}
	dp.Networking.TransparentProxying = &resource.TransparentProxying{RedirectPortOutbound: int64(testnet.FreePort(t))}
	dp.Networking.Outbound = []resource.Outbound{{Port: int64(outbound), BackendRef: &resource.BackendRef{Kind: "MeshExternalService", Name: "dns"}}}
	w.Dataplanes = []*resource.Dataplane{dp}
	out := mustRender(t, w, Options{UpstreamDNS: srv.Addr()})
	startEnvoy(t, envoy, out.Nodes["default.live"], testnet.FreePort(t))

	// The first resolution happens as the cluster initialises; retry briefly
	// (bounded) in case the first connection races it.
	var got string
	for i := 0; i < 20 && got == ""; i++ {
		got = readLine(t, outbound)
		if got == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !strings.Contains(got, "sni=api.upstream.test") {
		t.Fatalf("server said %q, want a TLS connection with SNI api.upstream.test", got)
	}
	if st := srv.Stats(); st.Answered == 0 {
		t.Errorf("embedded DNS answered nothing (%+v): Envoy did not use Options.UpstreamDNS", st)
	}
}

// startEnvoyBootstrap runs Envoy on any bootstrap until the test ends, waiting
// (bounded) for /ready to say LIVE.
func startEnvoyBootstrap(t *testing.T, envoy string, b proto.Message) *envoyproc.Proc {
	t.Helper()
	js, err := CanonicalJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return envoyproc.StartT(t, envoyproc.Options{Bin: envoy, Bootstrap: js})
}

// TestFileSDSRotationReachesEnvoyWithoutTouchingTheCluster (F7): with
// SecretsVia file, replacing only the client certificate's secret file
// (atomic rename) makes a running Envoy present the new certificate; the
// cluster is never modified. Editing the caCert is a new, content-named CA
// secret (shared by every service with that bundle): the full drop reaches
// Envoy as one modified cluster, and the new trust anchors apply.
func TestFileSDSRotationReachesEnvoyWithoutTouchingTheCluster(t *testing.T) {
	envoy := testenv.Envoy(t)
	goodCA, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	wrongCA, err := testpki.NewCA(testpki.CommonName("not the server's CA"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := goodCA.Issue(testpki.DNSNames("api.test"), testpki.ServerAuth())
	if err != nil {
		t.Fatal(err)
	}
	clientV1, err := goodCA.Issue(testpki.CommonName("client-v1"), testpki.ClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	clientV2, err := goodCA.Issue(testpki.CommonName("client-v2"), testpki.ClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	// The server asks for a client certificate and reports its name.
	port := tlsEchoServer(t, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, ClientAuth: tls.RequireAnyClientCert})

	xdsDir := t.TempDir()
	secrets := filepath.Join(xdsDir, "sds")
	redirect, outbound, adminPort := testnet.FreePort(t), testnet.FreePort(t), testnet.FreePort(t)
	renderWith := func(ca []byte, client *testpki.Leaf) *Node {
		tl := &model.TLS{Mode: resource.ModeSecured, MinVersion: resource.TLSAuto, MaxVersion: resource.TLSAuto, ServerName: "api.test", CA: ca,
			ClientCert: client.CertPEM, ClientKey: client.KeyPEM}
		w := world(withTLS(svc("api", "tcp", 443, ep("127.0.0.1", uint32(port))), tl))
		dp := &resource.Dataplane{Meta: resource.Meta{Kind: resource.KindDataplane, Mesh: "default", Name: "live"}}
		dp.Networking.TransparentProxying = &resource.TransparentProxying{RedirectPortOutbound: int64(redirect)}
		dp.Networking.Outbound = []resource.Outbound{{Port: int64(outbound), BackendRef: &resource.BackendRef{Kind: "MeshExternalService", Name: "api"}}}
		w.Dataplanes = []*resource.Dataplane{dp}
		return mustRender(t, w, Options{SecretsVia: SecretsFile, SecretsDir: secrets}).Nodes["default.live"]
	}
	awaitLine := func(want string) {
		t.Helper()
		var got string
		for i := 0; i < 100 && !strings.Contains(got, want); i++ {
			time.Sleep(100 * time.Millisecond)
			got = readLine(t, outbound)
		}
		if !strings.Contains(got, want) {
			t.Fatalf("server said %q, want %q", got, want)
		}
	}
	n1 := renderWith(wrongCA.CertPEM, clientV1)
	writeNodeFiles(t, n1, xdsDir, secrets)
	b, err := Bootstrap(BootstrapOptions{XDS: XDSFile, XDSDir: xdsDir, NodeID: n1.ID, AdminPort: uint32(adminPort)})
	if err != nil {
		t.Fatal(err)
	}
	admin := startEnvoyBootstrap(t, envoy, b)
	// The cluster and listener come from files after /ready; wait for the listener.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(admin.Text("/listeners"), fmt.Sprintf("127.0.0.1:%d", outbound)) {
		if time.Now().After(deadline) {
			t.Fatal("outbound listener never arrived from lds.json")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := readLine(t, outbound); got != "" {
		t.Fatalf("with the wrong CA the handshake must fail, server said %q", got)
	}
	if statValueOrZero(admin, "cluster_manager.cluster_added") == 0 {
		t.Fatal("cannot read cluster_manager stats from the admin endpoint")
	}

	// Edit the caCert: a new bundle is a new secret name, so the cluster changes.
	modifiedBefore := statValueOrZero(admin, "cluster_manager.cluster_modified")
	n2 := renderWith(goodCA.CertPEM, clientV1)
	caName := names.CASecret(goodCA.CertPEM)
	if secretByName(n2, caName) == nil || secretByName(n2, names.CASecret(wrongCA.CertPEM)) != nil {
		t.Fatalf("after the edit the node must hold the new bundle's secret %s and not the old one", caName)
	}
	writeNodeFiles(t, n2, xdsDir, secrets)
	awaitLine("client=client-v1")
	modifiedAfterEdit := statValueOrZero(admin, "cluster_manager.cluster_modified")
	if modifiedAfterEdit != modifiedBefore+1 {
		t.Errorf("cluster_manager.cluster_modified went %d -> %d, want one cluster modified by the caCert edit", modifiedBefore, modifiedAfterEdit)
	}

	// Rotate: only the client certificate's secret file changes.
	n3 := renderWith(goodCA.CertPEM, clientV2)
	files, err := n3.SecretFiles(secrets)
	if err != nil {
		t.Fatal(err)
	}
	clientFile := SecretPath(secrets, names.ClientSecret(n3.Clusters[0].Name))
	if _, ok := files[clientFile]; !ok {
		t.Fatalf("no client secret file %s among %d", clientFile, len(files))
	}
	tmp := filepath.Join(secrets, ".rotate.tmp")
	if err := os.WriteFile(tmp, files[clientFile], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, clientFile); err != nil {
		t.Fatal(err)
	}
	awaitLine("client=client-v2")
	if after := statValueOrZero(admin, "cluster_manager.cluster_modified"); after != modifiedAfterEdit {
		t.Errorf("cluster_manager.cluster_modified went %d -> %d: rotation rebuilt the cluster", modifiedAfterEdit, after)
	}
}

func statValueOrZero(e *envoyproc.Proc, name string) int {
	v, _ := e.StatInt(context.Background(), name)
	return int(v)
}

// TestEnvoyTransparentChainForPortlessService drives the transparent
// listener's filter-chain matching in a real Envoy. Without a redirect the
// destination is the listener's own address, so the port-less service gets
// VIP 127.0.0.1 and another service claims the listener's port on another
// VIP: Envoy then finds a subtree for that port and (without the extra
// per-port chains) would never consider the port-less chain.
func TestEnvoyTransparentChainForPortlessService(t *testing.T) {
	envoy := testenv.Envoy(t)
	redirect := testnet.FreePort(t)
	anyPort := svc("any-port", "tcp", 0, ep("127.0.0.1", uint32(testnet.LineServer(t, "hello from any-port"))))
	anyPort.VIP = netip.MustParseAddr("127.0.0.1")
	other := svc("other", "tcp", uint32(redirect), ep("127.0.0.1", uint32(testnet.LineServer(t, "wrong service"))))
	other.VIP = netip.MustParseAddr("127.0.0.2")
	w := world(anyPort, other)
	dp := &resource.Dataplane{Meta: resource.Meta{Kind: resource.KindDataplane, Mesh: "default", Name: "live"}}
	dp.Networking.TransparentProxying = &resource.TransparentProxying{RedirectPortOutbound: int64(redirect)}
	w.Dataplanes = []*resource.Dataplane{dp}
	startEnvoy(t, envoy, mustRender(t, w, Options{}).Nodes["default.live"], testnet.FreePort(t))
	if got := readLine(t, redirect); got != "hello from any-port" {
		t.Fatalf("got %q, want the port-less service's answer", got)
	}
}

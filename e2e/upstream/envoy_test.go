package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/meshext/meshext/controller/dns"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testpki"
	mdns "github.com/miekg/dns"
	"google.golang.org/grpc/credentials/insecure"
)

// envoyBootstrap has one listener per case, each proxying to a STRICT_DNS
// cluster whose only resolver is our controller/dns server. The stand-in
// names resolve through the DNS hosts file, exactly as in the e2e suite.
const envoyBootstrap = `
node: {id: standin-test, cluster: standin-test}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
{{- range .Listeners}}
  - name: {{.Name}}
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
{{- if .HTTP}}
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {{.Name}}
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: "/"}, route: {cluster: {{.Name}}, auto_host_rewrite: true}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
{{- else}}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {{.Name}}
          cluster: {{.Name}}
{{- end}}
{{- end}}
  clusters:
{{- range .Listeners}}
  - name: {{.Name}}
    type: STRICT_DNS
    connect_timeout: 5s
    dns_lookup_family: {{.Family}}
    typed_dns_resolver_config:
      name: envoy.network.dns_resolver.cares
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
        resolvers: [{socket_address: {address: 127.0.0.1, port_value: {{$.DNSPort}}}}]
    load_assignment:
      cluster_name: {{.Name}}
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: {{.Host}}, port_value: {{.Port}}}}}}]}]
{{- if .H2}}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
{{- end}}
{{- if .SNI}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {{.SNI}}
{{- if .AllowReneg}}
        allow_renegotiation: true
{{- end}}
        common_tls_context:
          validation_context:
            trusted_ca: {filename: {{$.CA}}}
            match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: {{.SNI}}}}]
{{- if .ClientCert}}
          tls_certificates: [{certificate_chain: {filename: {{.ClientCert}}}, private_key: {filename: {{.ClientKey}}}}]
{{- end}}
{{- end}}
{{- end}}
`

type envoyCase struct {
	Name, Host, SNI, Family string
	Port                    int
	HTTP, H2, AllowReneg    bool
	ClientCert, ClientKey   string
}

type envoyProc struct {
	listeners map[string]string // name → host:port
}

// runEnvoy starts a stock Envoy with the bootstrap and waits (bounded) until
// it is LIVE, which needs every STRICT_DNS cluster resolved once.
func runEnvoy(t *testing.T, data any) *envoyProc {
	t.Helper()
	var cfg bytes.Buffer
	if err := template.Must(template.New("b").Parse(envoyBootstrap)).Execute(&cfg, data); err != nil {
		t.Fatal(err)
	}
	e := envoyproc.StartT(t, envoyproc.Options{Bootstrap: cfg.Bytes(), LogLevel: "debug",
		Args: []string{"--file-flush-interval-msec", "100", "--component-log-level", "main:info,config:info,init:info,runtime:info"}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("envoy config:\n%s", cfg.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ls, err := e.Listeners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &envoyProc{listeners: ls}
}

// TestThroughEnvoyWithEmbeddedDNS runs the seed's shapes through a real
// Envoy: TCP+TLS, mTLS with the seed client certificate, HTTPS and gRPCS,
// every upstream name resolved by controller/dns (c-ares as the client) from
// a hosts file, plus a generated name answered from the VIP records.
//
// Envoy clusters use V4_ONLY on purpose: Envoy's upstream IPv6 sockets are
// IPV6_V6ONLY, so an IPv4-mapped AAAA answer (::ffff:a.b.c.d) is "Network
// is unreachable" for Envoy. The mapped form is for applications with
// dual-stack sockets; TestIPv4MappedAnswerIsDialable checks that.
func TestThroughEnvoyWithEmbeddedDNS(t *testing.T) {
	set := startSet(t)
	dir := t.TempDir()
	caPath, hostsPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "hosts")
	if err := set.CA.WriteCertPEM(caPath); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hostsPath, set.HostsFile(), 0o644); err != nil {
		t.Fatal(err)
	}
	dnsSrv, err := dns.New(dns.Config{Listen: "127.0.0.1:0", HostsFile: hostsPath, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := dnsSrv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dnsSrv.Close()
	// A generated name whose "VIP" is the echo stand-in's loopback address.
	if err := dnsSrv.SetRecords(map[string]netip.Addr{"mes-tcp.svc.meshext.local": set.Addrs[TCPBin]}); err != nil {
		t.Fatal(err)
	}
	wrong, err := set.CA.Issue(testpki.CommonName("not-the-seed"), testpki.ClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	wrongCrt, wrongKey := filepath.Join(dir, "wrong.crt"), filepath.Join(dir, "wrong.key")
	if err := wrong.WriteFiles(wrongCrt, wrongKey); err != nil {
		t.Fatal(err)
	}
	seedCrt, _ := filepath.Abs("testdata/seed-client.crt")
	seedKey, _ := filepath.Abs("testdata/seed-client.key")

	_, dnsPort, _ := net.SplitHostPort(dnsSrv.Addr())
	cases := []envoyCase{
		{Name: "tcp_vip_name", Host: "mes-tcp.svc.meshext.local", Family: "V4_ONLY", Port: Port(set.Echo)},
		{Name: "tcp_tls", Host: TCPBin, SNI: TCPBin, Family: "V4_ONLY", Port: Port(set.EchoTLS)},
		{Name: "tcp_mtls", Host: TCPBin, SNI: TCPBin, Family: "V4_ONLY", Port: Port(set.EchoMTLS), ClientCert: seedCrt, ClientKey: seedKey},
		{Name: "tcp_mtls_wrong", Host: TCPBin, SNI: TCPBin, Family: "V4_ONLY", Port: Port(set.EchoMTLS), ClientCert: wrongCrt, ClientKey: wrongKey},
		{Name: "https", Host: HTTPBin, SNI: HTTPBin, Family: "V4_ONLY", Port: Port(set.HTTPS), HTTP: true},
		{Name: "grpcs", Host: GRPCBin, SNI: GRPCBin, Family: "V4_ONLY", Port: Port(set.GRPCS), HTTP: true, H2: true},
	}
	envoy := runEnvoy(t, map[string]any{"Listeners": cases, "DNSPort": dnsPort, "CA": caPath})

	for _, name := range []string{"tcp_vip_name", "tcp_tls", "tcp_mtls"} {
		c, err := net.DialTimeout("tcp", envoy.listeners[name], 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := echoRoundTrip(c); err != nil || got != "echo this\n" {
			t.Errorf("%s through Envoy: %q, %v", name, got, err)
		}
	}
	c, err := net.DialTimeout("tcp", envoy.listeners["tcp_mtls_wrong"], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := echoRoundTrip(c); got != "" {
		t.Errorf("mTLS with a non-seed client cert through Envoy echoed %q", got)
	}

	hc := httpClient(envoy.listeners["https"], nil)
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://mes-https.svc.meshext.local/get")
	if err != nil {
		t.Fatal(err)
	}
	var got httpbinGet
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || got.Headers["Host"] != HTTPBin || resp.Header.Get(HeaderServerName) != HTTPBin || resp.Header.Get(HeaderTLS) == "none" {
		t.Errorf("HTTPS through Envoy: %v %+v tls=%q sni=%q", err, got, resp.Header.Get(HeaderTLS), resp.Header.Get(HeaderServerName))
	}

	cc := grpcConn(t, envoy.listeners["grpcs"], insecure.NewCredentials())
	if names := listServices(t, cc); !strings.Contains(strings.Join(names, " "), HelloService) {
		t.Errorf("gRPCS through Envoy: services %v", names)
	}

	var tlsSNIs []string
	for _, h := range set.Handshakes.All() {
		tlsSNIs = append(tlsSNIs, h.ServerName+"/"+tls.VersionName(h.Version)+"/alpn="+h.ALPN)
	}
	st := dnsSrv.Stats()
	if st.Answered == 0 || st.Forwarded != 0 {
		t.Errorf("DNS stats %+v: Envoy should have resolved through us, without forwarding", st)
	}
	t.Logf("handshakes seen by the stand-ins: %v; DNS stats %+v", tlsSNIs, st)
}

// TestIPv4MappedAnswerIsDialable: the AAAA answer for a VIP name is the
// IPv4-mapped address, and an application's dual-stack IPv6 socket (Linux
// default, bindv6only=0) reaches the IPv4 listener through it. The socket is
// made by hand because Go's dialer treats mapped addresses as IPv4.
func TestIPv4MappedAnswerIsDialable(t *testing.T) {
	set := startSet(t)
	dnsSrv, err := dns.New(dns.Config{Listen: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := dnsSrv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dnsSrv.Close()
	if err := dnsSrv.SetRecords(map[string]netip.Addr{"mes-tcp.svc.meshext.local": set.Addrs[TCPBin]}); err != nil {
		t.Fatal(err)
	}
	q := new(mdns.Msg)
	q.SetQuestion("mes-tcp.svc.meshext.local.", mdns.TypeAAAA)
	resp, _, err := (&mdns.Client{Timeout: 3 * time.Second}).Exchange(q, dnsSrv.Addr())
	if err != nil || len(resp.Answer) != 1 {
		t.Fatalf("AAAA query: %v %v", err, resp)
	}
	mapped, _ := netip.AddrFromSlice(resp.Answer[0].(*mdns.AAAA).AAAA)
	if !mapped.Is4In6() || mapped.Unmap() != set.Addrs[TCPBin] {
		t.Fatalf("AAAA answer %s, want ::ffff:%s", mapped, set.Addrs[TCPBin])
	}

	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	testenv.Require(t, err == nil, fmt.Sprintf("IPv6 sockets (%v)", err))
	f := os.NewFile(uintptr(fd), "tcp6-mapped")
	defer f.Close()
	if err := syscall.Connect(fd, &syscall.SockaddrInet6{Port: Port(set.Echo), Addr: mapped.As16()}); err != nil {
		t.Fatalf("connect [%s]:%d from an AF_INET6 socket: %v", mapped, Port(set.Echo), err)
	}
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := echoRoundTrip(c); err != nil || got != "echo this\n" {
		t.Fatalf("echo over the mapped address: %q %v", got, err)
	}
}

// TestRenegotiationThroughEnvoy: with allow_renegotiation Envoy follows a
// server-initiated TLS 1.2 renegotiation and traffic continues; without it
// the connection dies. The server is RenegotiatingServer (openssl s_server).
func TestRenegotiationThroughEnvoy(t *testing.T) {
	openssl := testenv.Tool(t, "openssl")
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.DNSNames("reneg.test"), testpki.Key(testpki.RSA2048))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caPath := filepath.Join(dir, "ca.crt")
	if err := ca.WriteCertPEM(caPath); err != nil {
		t.Fatal(err)
	}
	servers := map[string]*RenegotiatingServer{}
	for _, name := range []string{"reneg_allowed", "reneg_denied"} {
		srv, err := StartRenegotiatingServer(openssl, "127.0.0.14", leaf)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		servers[name] = srv
	}
	dnsSrv, err := dns.New(dns.Config{Listen: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := dnsSrv.Start(); err != nil {
		t.Fatal(err)
	}
	defer dnsSrv.Close()
	if err := dnsSrv.SetRecords(map[string]netip.Addr{"reneg.test": netip.MustParseAddr("127.0.0.14")}); err != nil {
		t.Fatal(err)
	}
	_, dnsPort, _ := net.SplitHostPort(dnsSrv.Addr())
	port := func(name string) int {
		_, p, _ := net.SplitHostPort(servers[name].Addr())
		var n int
		fmt.Sscan(p, &n)
		return n
	}
	envoy := runEnvoy(t, map[string]any{"DNSPort": dnsPort, "CA": caPath, "Listeners": []envoyCase{
		{Name: "reneg_allowed", Host: "reneg.test", SNI: "reneg.test", Family: "V4_ONLY", Port: port("reneg_allowed"), AllowReneg: true},
		{Name: "reneg_denied", Host: "reneg.test", SNI: "reneg.test", Family: "V4_ONLY", Port: port("reneg_denied")},
	}})

	for name, srv := range servers {
		c, err := net.DialTimeout("tcp", envoy.listeners[name], 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "before-"+name+"\n"); err != nil {
			t.Fatal(err)
		}
		if err := srv.WaitOutput("before-"+name, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := srv.Renegotiate(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // let the HelloRequest reach Envoy before the data line
		if err := srv.Send("after-renegotiation"); err != nil {
			t.Fatal(err)
		}
		got, err := bufio.NewReader(c).ReadString('\n') // the line, or EOF when Envoy drops the connection
		if name == "reneg_allowed" {
			if !strings.Contains(got, "after-renegotiation") {
				t.Errorf("%s: client read %q (%v); server output:\n%s", name, got, err, srv.Output())
			}
		} else if strings.Contains(got, "after-renegotiation") {
			t.Errorf("%s: data flowed after a refused renegotiation", name)
		}
		t.Logf("%s: client read %q err=%v", name, got, err)
	}
}

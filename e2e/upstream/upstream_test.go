package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testpki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startSet runs the seed layout on 127.0.0.11-13 with ephemeral ports, so it
// never collides with the e2e suite's fixed ports when packages run in parallel.
func startSet(t *testing.T) *Set {
	t.Helper()
	s, err := Start(Config{Ports: Ports{}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func seedClientCert(t *testing.T) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair("testdata/seed-client.crt", "testdata/seed-client.key")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// echoRoundTrip sends "echo this\n", half-closes like `nc -q`, and returns what came back.
func echoRoundTrip(c net.Conn) (string, error) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "echo this\n"); err != nil {
		return "", err
	}
	switch cc := c.(type) {
	case *tls.Conn:
		if err := cc.CloseWrite(); err != nil {
			return "", err
		}
	case *net.TCPConn:
		if err := cc.CloseWrite(); err != nil {
			return "", err
		}
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

func dialTLS(addr string, cfg *tls.Config) (net.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
}

func TestSeedPinMatchesSeedCert(t *testing.T) {
	pemBytes, err := os.ReadFile("testdata/seed-client.crt")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := testpki.ParseCertPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	if got := testpki.SPKISHA256(cert); got != SeedClientSPKISHA256 {
		t.Fatalf("seed client certificate SPKI %s, constant says %s", got, SeedClientSPKISHA256)
	}
	// The reasons the pin exists: expired, and issued by a CA we do not have.
	if !cert.NotAfter.Before(time.Now()) || cert.Issuer.CommonName != "tcpbin.com" || cert.Subject.CommonName != "tcpbin.com-client" {
		t.Fatalf("unexpected seed certificate: subject %q issuer %q notAfter %s", cert.Subject, cert.Issuer, cert.NotAfter)
	}
}

func TestTCPEchoPlainTLSAndMTLS(t *testing.T) {
	s := startSet(t)
	if !strings.HasPrefix(s.Echo.Addr(), "127.0.0.11:") || !strings.HasPrefix(s.EchoMTLS.Addr(), "127.0.0.11:") {
		t.Fatalf("tcpbin.com listeners on %s / %s, want 127.0.0.11", s.Echo.Addr(), s.EchoMTLS.Addr())
	}
	c, err := net.DialTimeout("tcp", s.Echo.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := echoRoundTrip(c); err != nil || got != "echo this\n" {
		t.Fatalf("plain echo: %q, %v", got, err)
	}

	trust := &tls.Config{RootCAs: s.CA.Pool(), ServerName: TCPBin}
	c, err = dialTLS(s.EchoTLS.Addr(), trust)
	if err != nil {
		t.Fatalf("TLS echo handshake: %v", err)
	}
	if got, err := echoRoundTrip(c); err != nil || got != "echo this\n" {
		t.Fatalf("TLS echo: %q, %v", got, err)
	}
	var hn x509.HostnameError
	if _, err := dialTLS(s.EchoTLS.Addr(), &tls.Config{RootCAs: s.CA.Pool(), ServerName: HTTPBin}); !errors.As(err, &hn) {
		t.Fatalf("TLS echo as httpbin.org: got %v, want a hostname mismatch", err)
	}

	// mTLS: the seed's (expired, foreign) client certificate is accepted...
	withSeed := trust.Clone()
	withSeed.Certificates = []tls.Certificate{seedClientCert(t)}
	c, err = dialTLS(s.EchoMTLS.Addr(), withSeed)
	if err != nil {
		t.Fatalf("mTLS with the seed client cert: %v", err)
	}
	if got, err := echoRoundTrip(c); err != nil || got != "echo this\n" {
		t.Fatalf("mTLS echo with the seed cert: %q, %v", got, err)
	}
	// ...while a valid certificate from the very CA that signed the server is
	// refused, as is no certificate at all.
	other, err := s.CA.Issue(testpki.CommonName("tcpbin.com-client"), testpki.ClientAuth())
	if err != nil {
		t.Fatal(err)
	}
	withOther := trust.Clone()
	withOther.Certificates = []tls.Certificate{other.TLS}
	for name, cfg := range map[string]*tls.Config{"other cert": withOther, "no cert": trust} {
		c, err := dialTLS(s.EchoMTLS.Addr(), cfg)
		if err == nil {
			// TLS 1.3: the server's verdict arrives after the client finished.
			var got string
			got, err = echoRoundTrip(c)
			if got != "" {
				t.Fatalf("mTLS with %s echoed %q", name, got)
			}
		}
		// The refusal shows as a TLS alert, or as a reset/broken pipe when our
		// write races the server's close; either way nothing is echoed.
		if err == nil {
			t.Fatalf("mTLS with %s: no error", name)
		}
		t.Logf("mTLS with %s refused: %v", name, err)
	}

	// The server side completes every handshake above (the client refuses the
	// httpbin.org one afterwards), so the log holds exactly those SNIs.
	var sawSeed bool
	for _, h := range s.Handshakes.All() {
		if h.ServerName != TCPBin && h.ServerName != HTTPBin {
			t.Errorf("handshake with SNI %q", h.ServerName)
		}
		sawSeed = sawSeed || (h.ClientCert && h.ClientSubCN == "tcpbin.com-client")
	}
	if !sawSeed {
		t.Fatalf("handshake log %+v has no accepted seed client cert", s.Handshakes.All())
	}
}

type httpbinGet struct {
	Args    map[string]string `json:"args"`
	Headers map[string]string `json:"headers"`
	Origin  string            `json:"origin"`
	URL     string            `json:"url"`
	Method  string            `json:"method"`
}

// httpClient dials addr whatever the URL's host says, like curl --resolve.
func httpClient(addr string, tlsCfg *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
		TLSClientConfig:   tlsCfg,
		ForceAttemptHTTP2: true,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestHTTPBinPlainAndTLS(t *testing.T) {
	s := startSet(t)
	cases := []struct {
		srv    *Server
		scheme string
		client *http.Client
		proto  string
	}{
		{s.HTTP, "http", httpClient(s.HTTP.Addr(), nil), "HTTP/1.1"},
		{s.HTTPS, "https", httpClient(s.HTTPS.Addr(), &tls.Config{RootCAs: s.CA.Pool()}), "HTTP/2.0"},
	}
	for _, c := range cases {
		t.Run(c.scheme, func(t *testing.T) {
			defer c.client.CloseIdleConnections()
			req, _ := http.NewRequest("GET", c.scheme+"://httpbin.org/get?show_env=1&a=1&a=2", nil)
			req.Header.Set("X-Test", "meshext")
			resp, err := c.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got httpbinGet
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if got.Headers["Host"] != "httpbin.org" || got.Headers["X-Test"] != "meshext" || got.Method != "GET" {
				t.Fatalf("echoed headers %v method %q", got.Headers, got.Method)
			}
			if got.Args["a"] != "1,2" || got.Args["show_env"] != "1" {
				t.Fatalf("args %v", got.Args)
			}
			if want := c.scheme + "://httpbin.org/get?show_env=1&a=1&a=2"; got.URL != want {
				t.Fatalf("url %q, want %q", got.URL, want)
			}
			if got.Origin != "127.0.0.1" {
				t.Fatalf("origin %q", got.Origin)
			}
			if resp.Proto != c.proto || resp.Header.Get(HeaderProtocol) != c.proto {
				t.Fatalf("protocol %s / %s header, want %s", resp.Proto, resp.Header.Get(HeaderProtocol), c.proto)
			}

			resp, err = c.client.Get(c.scheme + "://httpbin.org/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), "<title>httpbin.org</title>") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("index: %q", body)
			}

			resp, err = c.client.Get(c.scheme + "://httpbin.org/status/418")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 418 {
				t.Fatalf("/status/418 gave %d", resp.StatusCode)
			}
			resp, err = c.client.Get(c.scheme + "://httpbin.org/nope")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Fatalf("/nope gave %d", resp.StatusCode)
			}
		})
	}
	// An HTTP/1.1-only TLS client (Envoy's `protocol: http` upstream) works too.
	h1 := httpClient(s.HTTPS.Addr(), &tls.Config{RootCAs: s.CA.Pool(), NextProtos: []string{"http/1.1"}})
	h1.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	defer h1.CloseIdleConnections()
	resp, err := h1.Get("https://httpbin.org/headers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Proto != "HTTP/1.1" || resp.Header.Get(HeaderTLS) == "none" || resp.Header.Get(HeaderServerName) != HTTPBin {
		t.Fatalf("h1 over TLS: proto %s tls %q sni %q", resp.Proto, resp.Header.Get(HeaderTLS), resp.Header.Get(HeaderServerName))
	}
}

func grpcConn(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// listServices asks server reflection (v1) for the service list, like `grpcurl list`.
func listServices(t *testing.T, cc *grpc.ClientConn) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := reflectionv1.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	sort.Strings(names)
	// grpcurl describe/invoke needs the file behind a symbol too.
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: HelloService}}); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	fds := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(fds) == 0 {
		t.Fatalf("no file for %s: %v", HelloService, resp.GetErrorResponse())
	}
	var fd descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(fds[0], &fd); err != nil || fd.GetPackage() != "hello" {
		t.Fatalf("file for %s: package %q err %v", HelloService, fd.GetPackage(), err)
	}
	return names
}

func TestGRPCBinReflectionHealthAndHello(t *testing.T) {
	s := startSet(t)
	files, err := standinFiles()
	if err != nil {
		t.Fatal(err)
	}
	reqD, _ := files.FindDescriptorByName("hello.HelloRequest")
	respD, _ := files.FindDescriptorByName("hello.HelloResponse")
	want := []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", GRPCBinService, HelloService}
	sort.Strings(want)
	for name, cc := range map[string]*grpc.ClientConn{
		"plain": grpcConn(t, s.GRPC.Addr(), insecure.NewCredentials()),
		"tls":   grpcConn(t, s.GRPCS.Addr(), credentials.NewTLS(&tls.Config{RootCAs: s.CA.Pool(), ServerName: GRPCBin})),
	} {
		t.Run(name, func(t *testing.T) {
			if got := listServices(t, cc); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("services %v, want %v", got, want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health: %v %v", h, err)
			}
			req := dynamicpb.NewMessage(reqD.(protoreflect.MessageDescriptor))
			req.Set(req.Descriptor().Fields().ByName("greeting"), protoreflect.ValueOfString("meshext"))
			resp := dynamicpb.NewMessage(respD.(protoreflect.MessageDescriptor))
			if err := cc.Invoke(ctx, "/hello.HelloService/SayHello", req, resp); err != nil {
				t.Fatal(err)
			}
			if got := resp.Get(resp.Descriptor().Fields().ByName("reply")).String(); got != "hello meshext" {
				t.Fatalf("SayHello reply %q", got)
			}
		})
	}
	// A TLS client offering no ALPN (an Envoy cluster without alpn_protocols)
	// still completes the handshake; see StartGRPCBin.
	c, err := dialTLS(s.GRPCS.Addr(), &tls.Config{RootCAs: s.CA.Pool(), ServerName: GRPCBin})
	if err != nil {
		t.Fatalf("no-ALPN TLS handshake to the gRPC stand-in: %v", err)
	}
	c.Close()
}

func TestTLS13OnlyVariantAndHandshakeLog(t *testing.T) {
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(testpki.DNSNames("tls13.example"))
	if err != nil {
		t.Fatal(err)
	}
	var log HandshakeLog
	srv, err := StartTCPEcho(TLS(leaf.TLS), TLSVersions(tls.VersionTLS13, tls.VersionTLS13), RecordHandshakes(&log), Logger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_, err = dialTLS(srv.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "tls13.example", MaxVersion: tls.VersionTLS12})
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.2 client against TLS 1.3-only server: %v, want a protocol version alert", err)
	}
	c, err := dialTLS(srv.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "tls13.example"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := echoRoundTrip(c); err != nil || got != "echo this\n" {
		t.Fatalf("TLS 1.3 echo %q %v", got, err)
	}
	all := log.All()
	if len(all) != 1 || all[0].Version != tls.VersionTLS13 || all[0].ServerName != "tls13.example" {
		t.Fatalf("handshake log %+v", all)
	}
}

func TestRequireClientCertFromCA(t *testing.T) {
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ca.Issue(testpki.DNSNames("mtls.example"))
	good, _ := ca.Issue(testpki.CommonName("client"), testpki.ClientAuth())
	expired, _ := ca.Issue(testpki.CommonName("client"), testpki.ClientAuth(), testpki.Expired())
	srv, err := StartHTTPBin(TLS(leaf.TLS), RequireClientCertFrom(ca.Pool()), Logger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	get := func(cert *testpki.Leaf) error {
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "mtls.example"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{cert.TLS}
		}
		hc := httpClient(srv.Addr(), cfg)
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://mtls.example/get")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get(good); err != nil {
		t.Fatalf("valid client cert: %v", err)
	}
	if err := get(expired); err == nil {
		t.Fatal("expired client cert accepted")
	}
	if err := get(nil); err == nil {
		t.Fatal("missing client cert accepted")
	}
}

func TestOptionErrors(t *testing.T) {
	ca, _ := testpki.NewCA()
	leaf, _ := ca.Issue(testpki.DNSNames("x.example"))
	for name, opts := range map[string][]Option{
		"versions without TLS":   {TLSVersions(tls.VersionTLS13, 0)},
		"client key without TLS": {RequireSeedClientCert()},
		"bad pin":                {TLS(leaf.TLS), RequireClientKey("abc")},
		"min above max":          {TLS(leaf.TLS), TLSVersions(tls.VersionTLS13, tls.VersionTLS12)},
		"bad address":            {Addr("127.0.0.1")},
		"no pins":                {TLS(leaf.TLS), RequireClientKey()},
		"nil client CA pool":     {TLS(leaf.TLS), RequireClientCertFrom(nil)},
	} {
		if srv, err := StartTCPEcho(opts...); err == nil {
			srv.Close()
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := Start(Config{Addrs: map[string]netip.Addr{"example.com": netip.MustParseAddr("127.0.0.1")}}); err == nil {
		t.Error("unknown stand-in name accepted")
	}
}

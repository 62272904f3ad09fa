package upstream

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/meshext/meshext/e2e/testpki"
)

// The public names the seed's examples reach.
const (
	TCPBin  = "tcpbin.com"
	HTTPBin = "httpbin.org"
	GRPCBin = "grpcbin.test.k6.io"
)

// Ports of the seven stand-in listeners. Zero means an ephemeral port.
type Ports struct {
	Echo, EchoTLS, EchoMTLS int // tcpbin.com
	HTTP, HTTPS             int // httpbin.org
	GRPC, GRPCS             int // grpcbin.test.k6.io
}

// DefaultPorts are the ports the seed's examples use.
func DefaultPorts() Ports {
	return Ports{Echo: 4242, EchoTLS: 4243, EchoMTLS: 4244, HTTP: 80, HTTPS: 443, GRPC: 9000, GRPCS: 9001}
}

// Config says where the three stand-ins listen.
type Config struct {
	// Addrs maps each public name (TCPBin, HTTPBin, GRPCBin) to the loopback
	// address serving it. Missing names get DefaultAddrs' value.
	Addrs map[string]netip.Addr
	Ports Ports
	// CA signs the server certificates; nil generates a fresh one.
	CA *testpki.CA
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultAddrs gives each name its own loopback address; on Linux all of
// 127.0.0.0/8 reaches lo, so nothing needs configuring.
func DefaultAddrs() map[string]netip.Addr {
	return map[string]netip.Addr{
		TCPBin:  netip.MustParseAddr("127.0.0.11"),
		HTTPBin: netip.MustParseAddr("127.0.0.12"),
		GRPCBin: netip.MustParseAddr("127.0.0.13"),
	}
}

// DefaultConfig is the seed's layout: default addresses and ports.
func DefaultConfig() Config { return Config{Addrs: DefaultAddrs(), Ports: DefaultPorts()} }

// Set is the running trio of stand-ins.
type Set struct {
	CA    *testpki.CA
	Addrs map[string]netip.Addr

	Echo, EchoTLS, EchoMTLS *Server // tcpbin.com 4242 / 4243 / 4244 (mTLS, seed client cert)
	HTTP, HTTPS             *Server // httpbin.org 80 / 443
	GRPC, GRPCS             *Server // grpcbin.test.k6.io 9000 / 9001

	// Handshakes records every TLS handshake of the TLS listeners.
	Handshakes *HandshakeLog
}

// Start brings up all seven listeners; on error nothing stays running.
func Start(cfg Config) (*Set, error) {
	addrs := DefaultAddrs()
	for name, a := range cfg.Addrs {
		if _, ok := addrs[name]; !ok {
			return nil, fmt.Errorf("upstream: unknown stand-in name %q (want %s, %s or %s)", name, TCPBin, HTTPBin, GRPCBin)
		}
		if !a.IsValid() {
			return nil, fmt.Errorf("upstream: invalid address for %s", name)
		}
		addrs[name] = a
	}
	ca := cfg.CA
	if ca == nil {
		var err error
		if ca, err = testpki.NewCA(testpki.CommonName("meshext stand-in CA")); err != nil {
			return nil, err
		}
	}
	certs := map[string]*testpki.Leaf{}
	for name := range addrs {
		leaf, err := ca.Issue(testpki.DNSNames(name), testpki.ServerAuth())
		if err != nil {
			return nil, err
		}
		certs[name] = leaf
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Set{CA: ca, Addrs: addrs, Handshakes: &HandshakeLog{}}
	at := func(name string, port int) Option {
		return Addr(net.JoinHostPort(addrs[name].String(), strconv.Itoa(port)))
	}
	tlsFor := func(name string) []Option {
		return []Option{TLS(certs[name].TLS), RecordHandshakes(s.Handshakes)}
	}
	p := cfg.Ports
	steps := []struct {
		dst   **Server
		start func(...Option) (*Server, error)
		opts  []Option
	}{
		{&s.Echo, StartTCPEcho, []Option{at(TCPBin, p.Echo)}},
		{&s.EchoTLS, StartTCPEcho, append(tlsFor(TCPBin), at(TCPBin, p.EchoTLS))},
		{&s.EchoMTLS, StartTCPEcho, append(tlsFor(TCPBin), at(TCPBin, p.EchoMTLS), RequireSeedClientCert())},
		{&s.HTTP, StartHTTPBin, []Option{at(HTTPBin, p.HTTP)}},
		{&s.HTTPS, StartHTTPBin, append(tlsFor(HTTPBin), at(HTTPBin, p.HTTPS))},
		{&s.GRPC, StartGRPCBin, []Option{at(GRPCBin, p.GRPC)}},
		{&s.GRPCS, StartGRPCBin, append(tlsFor(GRPCBin), at(GRPCBin, p.GRPCS))},
	}
	for _, st := range steps {
		srv, err := st.start(append(st.opts, Logger(log))...)
		if err != nil {
			return nil, errors.Join(err, s.Close())
		}
		*st.dst = srv
	}
	return s, nil
}

// Servers lists the running listeners in a fixed order.
func (s *Set) Servers() []*Server {
	var out []*Server
	for _, srv := range []*Server{s.Echo, s.EchoTLS, s.EchoMTLS, s.HTTP, s.HTTPS, s.GRPC, s.GRPCS} {
		if srv != nil {
			out = append(out, srv)
		}
	}
	return out
}

// Close stops every listener.
func (s *Set) Close() error {
	var errs []error
	for _, srv := range s.Servers() {
		errs = append(errs, srv.Close())
	}
	return errors.Join(errs...)
}

// HostsFile is /etc/hosts-format text mapping the three names to their
// stand-in addresses, for `meshext run --dns-hosts`.
func (s *Set) HostsFile() []byte {
	var b strings.Builder
	b.WriteString("# meshext stand-in upstreams (e2e/upstream)\n")
	for _, name := range sortedKeys(s.Addrs) {
		fmt.Fprintf(&b, "%s %s\n", s.Addrs[name], name)
	}
	return []byte(b.String())
}

// Port returns the bound port of srv.
func Port(srv *Server) int {
	_, p, err := net.SplitHostPort(srv.Addr())
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

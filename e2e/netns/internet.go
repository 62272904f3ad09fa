package netns

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshext/meshext/controller/dns"
	"github.com/meshext/meshext/e2e/upstream"
)

// Internet is what runs in the internet namespace: the seed's stand-ins on
// their internet addresses and the seed's ports, and a DNS server answering
// their names.
type Internet struct {
	*upstream.Set
	// CAFile is the stand-ins' CA (PEM): KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH
	// for the Envoy that originates TLS, --cacert for curl.
	CAFile string
	// HostsFile maps the three names to their internet addresses
	// (/etc/hosts format, for `meshext run --dns-hosts`).
	HostsFile string
	// DNS answers tcpbin.com, httpbin.org and grpcbin.test.k6.io (UDP and
	// TCP; other names are refused): the resolver of the egress Envoy
	// (`meshext bootstrap --upstream-dns`) and of processes in the egress
	// namespace.
	DNS netip.AddrPort
}

// StartInternet starts the stand-ins and the DNS server in tp.Internet,
// stopped when the test ends, and points tp.Egress's resolver at that DNS
// server.
func (tp *Topology) StartInternet(t testing.TB) *Internet {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var set *upstream.Set
	if err := tp.Internet.Do(func() (err error) {
		set, err = upstream.Start(upstream.Config{Addrs: StandInAddrs(), Ports: upstream.DefaultPorts(), Logger: quiet})
		return err
	}); err != nil {
		t.Fatalf("stand-ins in %s: %v", tp.Internet.Name, err)
	}
	t.Cleanup(func() { _ = set.Close() })

	in := &Internet{Set: set, DNS: netip.AddrPortFrom(InternetDNSAddr, 53)}
	dir := t.TempDir()
	in.CAFile = filepath.Join(dir, "standins-ca.pem")
	if err := set.CA.WriteCertPEM(in.CAFile); err != nil {
		t.Fatal(err)
	}
	in.HostsFile = filepath.Join(dir, "hosts")
	if err := os.WriteFile(in.HostsFile, set.HostsFile(), 0o644); err != nil {
		t.Fatal(err)
	}
	// meshext's own DNS server, with the hosts file and nothing to forward to.
	srv, err := dns.New(dns.Config{Listen: net.JoinHostPort(InternetDNSAddr.String(), "53"), HostsFile: in.HostsFile,
		RateLimit: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Internet.Do(srv.Start); err != nil {
		t.Fatalf("DNS server in %s: %v", tp.Internet.Name, err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := tp.Egress.SetResolver(InternetDNSAddr); err != nil {
		t.Fatal(err)
	}
	return in
}

// Endpoints are every listener of the internet namespace: the seven
// stand-ins and the DNS server.
func (in *Internet) Endpoints() []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range in.Servers() {
		out = append(out, netip.MustParseAddrPort(s.Addr()))
	}
	return append(out, in.DNS)
}

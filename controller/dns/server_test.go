package dns

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// start runs a Server on 127.0.0.1:0 for the test and closes it afterwards.
func start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// query asks addr over network ("udp" or "tcp") with a real miekg/dns client.
func query(t testing.TB, network, addr, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	c := &mdns.Client{Net: network, Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %s %s: %v", network, name, mdns.TypeToString[qtype], err)
	}
	if r.Id != m.Id {
		t.Fatalf("reply id %d, want %d", r.Id, m.Id)
	}
	return r
}

func answers(r *mdns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *mdns.A:
			out = append(out, v.A.String())
		case *mdns.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	return out
}

var seedRecords = map[string]netip.Addr{
	"mes-tcp.svc.meshext.local":      netip.MustParseAddr("242.0.0.1"),
	"mes-tcp-tls.svc.meshext.local.": netip.MustParseAddr("242.0.0.2"),
	"MES-HTTP.svc.meshext.local":     netip.MustParseAddr("242.0.0.3"),
}

func TestVIPRecordsOverUDPAndTCP(t *testing.T) {
	s := start(t, Config{})
	if err := s.SetRecords(seedRecords); err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"udp", "tcp"} {
		r := query(t, network, s.Addr(), "mes-tcp.svc.meshext.local.", mdns.TypeA)
		if r.Rcode != mdns.RcodeSuccess || !r.Authoritative {
			t.Fatalf("%s: rcode %s aa=%v", network, mdns.RcodeToString[r.Rcode], r.Authoritative)
		}
		if got := answers(r); len(got) != 1 || got[0] != "242.0.0.1" {
			t.Fatalf("%s: A answers %v, want [242.0.0.1]", network, got)
		}
		if ttl := r.Answer[0].Header().Ttl; ttl != 30 {
			t.Fatalf("%s: TTL %d, want 30", network, ttl)
		}
	}
}

func TestLookupIsCaseInsensitiveAndEchoesQuestionSpelling(t *testing.T) {
	s := start(t, Config{})
	if err := s.SetRecords(seedRecords); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Mes-Tcp-TLS.SVC.meshext.local.", "mes-http.svc.meshext.local."} {
		r := query(t, "udp", s.Addr(), name, mdns.TypeA)
		if len(r.Answer) != 1 {
			t.Fatalf("%s: %d answers, want 1 (rcode %s)", name, len(r.Answer), mdns.RcodeToString[r.Rcode])
		}
		if r.Answer[0].Header().Name != name {
			t.Fatalf("answer name %q, want the question's spelling %q", r.Answer[0].Header().Name, name)
		}
	}
}

func TestAAAAIsIPv4Mapped(t *testing.T) {
	s := start(t, Config{TTL: 5 * time.Second})
	if err := s.SetRecords(map[string]netip.Addr{
		"mes-tcp.svc.meshext.local": netip.MustParseAddr("242.0.0.7"),
		"v6.svc.meshext.local":      netip.MustParseAddr("fd00:fd02::5"),
	}); err != nil {
		t.Fatal(err)
	}
	r := query(t, "udp", s.Addr(), "mes-tcp.svc.meshext.local.", mdns.TypeAAAA)
	if len(r.Answer) != 1 {
		t.Fatalf("AAAA answers %v", r.Answer)
	}
	aaaa := r.Answer[0].(*mdns.AAAA)
	got, _ := netip.AddrFromSlice(aaaa.AAAA)
	if got != netip.MustParseAddr("::ffff:242.0.0.7") || aaaa.Hdr.Ttl != 5 {
		t.Fatalf("AAAA = %s ttl %d, want ::ffff:242.0.0.7 ttl 5", got, aaaa.Hdr.Ttl)
	}
	// An IPv6 VIP answers AAAA itself and has no A record (NODATA, not NXDOMAIN).
	if got := answers(query(t, "udp", s.Addr(), "v6.svc.meshext.local.", mdns.TypeAAAA)); len(got) != 1 || got[0] != "fd00:fd02::5" {
		t.Fatalf("IPv6 VIP AAAA = %v", got)
	}
	r = query(t, "udp", s.Addr(), "v6.svc.meshext.local.", mdns.TypeA)
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Fatalf("A for IPv6-only VIP: rcode %s answers %d ns %d, want NODATA with SOA", mdns.RcodeToString[r.Rcode], len(r.Answer), len(r.Ns))
	}
}

func TestUnknownNameInZoneIsNXDOMAIN(t *testing.T) {
	s := start(t, Config{Zones: []string{"mesh."}})
	if err := s.SetRecords(seedRecords); err != nil {
		t.Fatal(err)
	}
	if z := s.Zones(); len(z) != 2 || z[0] != "mesh" || z[1] != "svc.meshext.local" {
		t.Fatalf("zones %v, want [mesh svc.meshext.local]", z)
	}
	for _, name := range []string{"nope.svc.meshext.local.", "a.b.mesh.", "sub.mes-tcp.svc.meshext.local."} {
		r := query(t, "udp", s.Addr(), name, mdns.TypeA)
		if r.Rcode != mdns.RcodeNameError || !r.Authoritative {
			t.Fatalf("%s: rcode %s aa=%v, want authoritative NXDOMAIN", name, mdns.RcodeToString[r.Rcode], r.Authoritative)
		}
		soa, ok := r.Ns[0].(*mdns.SOA)
		if len(r.Ns) != 1 || !ok || soa.Minttl != 30 {
			t.Fatalf("%s: authority %v, want one SOA with minimum 30", name, r.Ns)
		}
	}
	// The zone apex exists: SOA answers SOA, other types get NODATA.
	r0 := query(t, "udp", s.Addr(), "svc.meshext.local.", mdns.TypeSOA)
	if r0.Rcode != mdns.RcodeSuccess || len(r0.Answer) != 1 || r0.Answer[0].Header().Rrtype != mdns.TypeSOA {
		t.Fatalf("SOA at apex: rcode %s answers %v", mdns.RcodeToString[r0.Rcode], r0.Answer)
	}
	if r0 = query(t, "udp", s.Addr(), "SVC.meshext.local.", mdns.TypeA); r0.Rcode != mdns.RcodeSuccess || len(r0.Answer) != 0 || len(r0.Ns) != 1 {
		t.Fatalf("A at apex: rcode %s, want NODATA", mdns.RcodeToString[r0.Rcode])
	}
	// MX for an existing name: NODATA (NOERROR, no answers).
	r := query(t, "tcp", s.Addr(), "mes-tcp.svc.meshext.local.", mdns.TypeMX)
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("MX: rcode %s answers %v, want NODATA", mdns.RcodeToString[r.Rcode], r.Answer)
	}
	if st := s.Stats(); st.NXDomain != 3 || st.Answered != 3 || st.Forwarded != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// upstreamServer is a second, independent DNS server the tests forward to.
func upstreamServer(t *testing.T, network string, answer map[string]string) string {
	t.Helper()
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if ip, ok := answer[strings.ToLower(r.Question[0].Name)]; ok && r.Question[0].Qtype == mdns.TypeA {
			rr, _ := mdns.NewRR(r.Question[0].Name + " 300 IN A " + ip)
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = mdns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	return serveTest(t, network, h)
}

// serveTest runs h on 127.0.0.1 over network for the test; it returns the address.
func serveTest(t *testing.T, network string, h mdns.Handler) string {
	t.Helper()
	started := make(chan struct{})
	srv := &mdns.Server{Handler: h, NotifyStartedFunc: func() { close(started) }}
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv.PacketConn = pc
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv.Listener = ln
	}
	go func() { _ = srv.ActivateAndServe() }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("test DNS server did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
	if srv.PacketConn != nil {
		return srv.PacketConn.LocalAddr().String()
	}
	return srv.Listener.Addr().String()
}

func TestForwardsOtherNamesToUpstream(t *testing.T) {
	up := upstreamServer(t, "udp", map[string]string{"example.com.": "192.0.2.10"})
	// A dead first upstream (nothing listens) must be skipped.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	s := start(t, Config{Upstreams: []string{deadAddr, up}, ForwardTimeout: 500 * time.Millisecond})
	if err := s.SetRecords(seedRecords); err != nil {
		t.Fatal(err)
	}
	r := query(t, "udp", s.Addr(), "Example.COM.", mdns.TypeA)
	if got := answers(r); len(got) != 1 || got[0] != "192.0.2.10" {
		t.Fatalf("forwarded answers %v (rcode %s), want [192.0.2.10]", got, mdns.RcodeToString[r.Rcode])
	}
	if r.Answer[0].Header().Ttl != 300 {
		t.Fatalf("forwarded TTL %d, want the upstream's 300", r.Answer[0].Header().Ttl)
	}
	// The upstream's own NXDOMAIN passes through.
	if r := query(t, "udp", s.Addr(), "missing.example.", mdns.TypeA); r.Rcode != mdns.RcodeNameError || r.Authoritative {
		t.Fatalf("upstream NXDOMAIN: rcode %s aa=%v", mdns.RcodeToString[r.Rcode], r.Authoritative)
	}
	if st := s.Stats(); st.Forwarded != 2 || st.ForwardFailed != 0 {
		t.Fatalf("stats %+v, want 2 forwarded", st)
	}
}

func TestForwardsOverTCPWhenAskedOverTCP(t *testing.T) {
	up := upstreamServer(t, "tcp", map[string]string{"tcp-only.example.": "192.0.2.20"})
	s := start(t, Config{Upstreams: []string{up}})
	if got := answers(query(t, "tcp", s.Addr(), "tcp-only.example.", mdns.TypeA)); len(got) != 1 || got[0] != "192.0.2.20" {
		t.Fatalf("answers %v", got)
	}
}

func TestSilentUpstreamGivesBoundedSERVFAIL(t *testing.T) {
	// UDP sockets that read nothing: queries to them time out.
	var silent []string
	for range 2 {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c.LocalAddr().String())
	}
	const timeout = 300 * time.Millisecond
	s := start(t, Config{Upstreams: silent, ForwardTimeout: timeout})
	begin := time.Now()
	r := query(t, "udp", s.Addr(), "example.org.", mdns.TypeA)
	took := time.Since(begin)
	if r.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
	if st := s.Stats(); st.ForwardFailed != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Config.ForwardTimeout's promise: each upstream is waited for once, at
	// most the timeout, so the answer comes after about len(Upstreams) ×
	// timeout. The slack above that is for a busy machine, well inside the
	// client's 3 s.
	if lo, hi := 2*timeout-50*time.Millisecond, 2*timeout+time.Second; took < lo || took > hi {
		t.Fatalf("SERVFAIL after %s with 2 silent upstreams and a %s forward timeout, want %s..%s", took, timeout, lo, hi)
	}

}

func writeHosts(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHostsFileOverrides(t *testing.T) {
	up := upstreamServer(t, "udp", map[string]string{"tcpbin.com.": "203.0.113.1"})
	hosts := writeHosts(t, `# stand-ins for the seed's public upstreams
127.0.0.11 tcpbin.com
127.0.0.12	httpbin.org   # tab separated, trailing comment
127.0.0.13 grpcbin.test.k6.io grpcbin.alias.
::1 grpcbin.test.k6.io
127.0.0.99 mes-tcp.svc.meshext.local
`)
	s := start(t, Config{HostsFile: hosts, Upstreams: []string{up}})
	if err := s.SetRecords(seedRecords); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"tcpbin.com.", mdns.TypeA, "127.0.0.11"}, // wins over the upstream's answer
		{"HTTPBIN.org.", mdns.TypeA, "127.0.0.12"},
		{"grpcbin.test.k6.io.", mdns.TypeA, "127.0.0.13"},
		{"grpcbin.test.k6.io.", mdns.TypeAAAA, "::1"},
		{"grpcbin.alias.", mdns.TypeA, "127.0.0.13"},
		{"mes-tcp.svc.meshext.local.", mdns.TypeA, "127.0.0.99"}, // overrides the VIP
	}
	for _, c := range cases {
		got := answers(query(t, "udp", s.Addr(), c.name, c.qtype))
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("%s %s = %v, want [%s]", c.name, mdns.TypeToString[c.qtype], got, c.want)
		}
	}
	// A hosts name with only an IPv4 address has no AAAA (like /etc/hosts): NODATA.
	if r := query(t, "udp", s.Addr(), "tcpbin.com.", mdns.TypeAAAA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("AAAA tcpbin.com: rcode %s answers %v", mdns.RcodeToString[r.Rcode], r.Answer)
	}
	if st := s.Stats(); st.Forwarded != 0 {
		t.Fatalf("hosts names were forwarded: %+v", st)
	}

	// Reload picks up a changed file; a broken file keeps the old overrides.
	if err := os.WriteFile(hosts, []byte("127.0.0.21 tcpbin.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadHosts(); err != nil {
		t.Fatal(err)
	}
	if got := answers(query(t, "udp", s.Addr(), "tcpbin.com.", mdns.TypeA)); len(got) != 1 || got[0] != "127.0.0.21" {
		t.Fatalf("after reload: %v", got)
	}
	if err := os.WriteFile(hosts, []byte("not-an-ip tcpbin.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadHosts(); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("broken hosts file: err = %v, want one naming line 1", err)
	}
	if got := answers(query(t, "udp", s.Addr(), "tcpbin.com.", mdns.TypeA)); len(got) != 1 || got[0] != "127.0.0.21" {
		t.Fatalf("after failed reload: %v", got)
	}
}

func TestSetRecordsSwapsAtomically(t *testing.T) {
	s := start(t, Config{})
	if err := s.SetRecords(map[string]netip.Addr{"old.svc.meshext.local": netip.MustParseAddr("242.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	if got := answers(query(t, "udp", s.Addr(), "old.svc.meshext.local.", mdns.TypeA)); len(got) != 1 {
		t.Fatalf("before swap: %v", got)
	}
	if err := s.SetRecords(map[string]netip.Addr{"new.svc.meshext.local": netip.MustParseAddr("242.0.0.2")}); err != nil {
		t.Fatal(err)
	}
	if r := query(t, "udp", s.Addr(), "old.svc.meshext.local.", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("removed name: rcode %s, want NXDOMAIN", mdns.RcodeToString[r.Rcode])
	}
	if got := answers(query(t, "udp", s.Addr(), "new.svc.meshext.local.", mdns.TypeA)); len(got) != 1 || got[0] != "242.0.0.2" {
		t.Fatalf("after swap: %v", got)
	}
	// An invalid record set is refused whole; the current one stays.
	err := s.SetRecords(map[string]netip.Addr{"bad..name": netip.MustParseAddr("242.0.0.3"), "ok.svc.meshext.local": netip.MustParseAddr("242.0.0.4")})
	if err == nil || !strings.Contains(err.Error(), "bad..name") {
		t.Fatalf("bad name: err = %v", err)
	}
	if err := s.SetRecords(map[string]netip.Addr{"zero.svc.meshext.local": {}}); err == nil {
		t.Fatal("invalid address accepted")
	}
	if got := s.Records(); len(got) != 1 || got["new.svc.meshext.local"] != netip.MustParseAddr("242.0.0.2") {
		t.Fatalf("records after refused updates: %v", got)
	}
}

// TestConcurrentSwapAndQuery checks (best under -race) that queries during
// swaps see either the old or the new set, never a mix or an error.
func TestConcurrentSwapAndQuery(t *testing.T) {
	s := start(t, Config{})
	a := map[string]netip.Addr{"x.svc.meshext.local": netip.MustParseAddr("242.0.0.1")}
	b := map[string]netip.Addr{"x.svc.meshext.local": netip.MustParseAddr("242.0.0.2")}
	if err := s.SetRecords(a); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			m := a
			if i%2 == 1 {
				m = b
			}
			if err := s.SetRecords(m); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	seen := map[string]int{}
	for i := 0; i < 200; i++ {
		got := answers(query(t, "udp", s.Addr(), "x.svc.meshext.local.", mdns.TypeA))
		if len(got) != 1 || (got[0] != "242.0.0.1" && got[0] != "242.0.0.2") {
			t.Fatalf("query %d during swaps: %v", i, got)
		}
		seen[got[0]]++
	}
	close(stop)
	wg.Wait()
	t.Logf("answers seen during swaps: %v", seen)
}

func TestConfigErrors(t *testing.T) {
	bad := []Config{
		{},
		{Listen: "no-port"},
		{Listen: "127.0.0.1:0", Upstreams: []string{"dns.google"}},
		{Listen: "127.0.0.1:0", Upstreams: []string{"8.8.8.8:99999"}},
		{Listen: "127.0.0.1:0", Zones: []string{"bad zone"}},
		{Listen: "127.0.0.1:0", TTL: time.Millisecond},
		{Listen: "127.0.0.1:0", HostsFile: "/nonexistent/hosts"},
		{Listen: "127.0.0.1:0", HostsFile: writeHosts(t, "127.0.0.1\n")},
	}
	for i, c := range bad {
		if _, err := New(c); err == nil {
			t.Errorf("config %d (%+v) accepted", i, c)
		} else {
			t.Logf("config %d: %v", i, err)
		}
	}
}

func TestParseUpstreamsAndSystemUpstreams(t *testing.T) {
	got, err := ParseUpstreams(" 10.0.0.1, 127.0.0.53:5353 ,[::1]:53,fd00::1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.1:53", "127.0.0.53:5353", "[::1]:53", "[fd00::1]:53"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("ParseUpstreams = %v, want %v", got, want)
	}
	if _, err := ParseUpstreams("10.0.0.1,resolver.example"); err == nil {
		t.Fatal("hostname upstream accepted")
	}
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.1\nnameserver 10.0.0.2\nsearch example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sys, err := SystemUpstreams(rc, "127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	if len(sys) != 1 || sys[0] != "10.0.0.2:53" {
		t.Fatalf("SystemUpstreams = %v, want [10.0.0.2:53] (our own listen address left out)", sys)
	}
}

func BenchmarkQueryVIPOverUDP(b *testing.B) {
	s := start(b, Config{})
	recs := map[string]netip.Addr{}
	for i := 0; i < 10000; i++ {
		recs["mes-"+strings.Repeat("x", i%7)+strconv.Itoa(i)+".svc.meshext.local"] = netip.AddrFrom4([4]byte{242, 0, byte(i >> 8), byte(i)})
	}
	if err := s.SetRecords(recs); err != nil {
		b.Fatal(err)
	}
	c := &mdns.Client{Net: "udp", Timeout: 3 * time.Second}
	conn, err := c.Dial(s.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	m := new(mdns.Msg)
	m.SetQuestion("mes-xxx3.svc.meshext.local.", mdns.TypeA)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, _, err := c.ExchangeWithConn(m, conn)
		if err != nil || len(r.Answer) != 1 {
			b.Fatalf("query: %v %v", err, r)
		}
	}
}

func BenchmarkSetRecords10k(b *testing.B) {
	s, err := New(Config{Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	recs := map[string]netip.Addr{}
	for i := 0; i < 10000; i++ {
		recs["mes-"+strconv.Itoa(i)+".svc.meshext.local"] = netip.AddrFrom4([4]byte{242, 0, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.SetRecords(recs); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFlagsToConfig(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 10.0.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := ResolvConf
	ResolvConf = rc
	defer func() { ResolvConf = old }()

	var f Flags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse([]string{"--dns-listen", "127.0.0.1:0", "--dns-hosts", writeHosts(t, "127.0.0.11 tcpbin.com\n"), "--dns-zones", "mesh, svc.example", "--dns-ttl", "10s"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.Config(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Enabled() || cfg.TTL != 10*time.Second || strings.Join(cfg.Zones, " ") != "mesh svc.example" || strings.Join(cfg.Upstreams, " ") != "10.0.0.53:53" {
		t.Fatalf("config %+v", cfg)
	}
	s := start(t, cfg)
	if got := answers(query(t, "udp", s.Addr(), "tcpbin.com.", mdns.TypeA)); len(got) != 1 || got[0] != "127.0.0.11" {
		t.Fatalf("hosts entry via flags: %v", got)
	}
	f.Upstream = "none"
	if cfg, err := f.Config(nil); err != nil || len(cfg.Upstreams) != 0 {
		t.Fatalf("none: %v %v", cfg.Upstreams, err)
	}
	f.Upstream = "127.0.0.1:5353,10.1.1.1"
	if cfg, err := f.Config(nil); err != nil || strings.Join(cfg.Upstreams, " ") != "127.0.0.1:5353 10.1.1.1:53" {
		t.Fatalf("explicit: %v %v", cfg.Upstreams, err)
	}
	f.Upstream = "resolver.example"
	if _, err := f.Config(nil); err == nil || !strings.Contains(err.Error(), "--dns-upstream") {
		t.Fatalf("bad upstream: %v", err)
	}
}

// TestGoResolverAsClient uses Go's own stub resolver (a different client
// implementation than miekg/dns) the way an application would.
func TestGoResolverAsClient(t *testing.T) {
	s := start(t, Config{})
	if err := s.SetRecords(seedRecords); err != nil {
		t.Fatal(err)
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", "mes-tcp.svc.meshext.local")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range addrs {
		got = append(got, a.String())
	}
	sort.Strings(got)
	// A plus the v4-mapped AAAA (which Go unmaps to the same IPv4 address).
	if len(got) == 0 || got[0] != "242.0.0.1" {
		t.Fatalf("LookupNetIP = %v", got)
	}
	_, err = r.LookupNetIP(ctx, "ip4", "missing.svc.meshext.local")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("missing name: %v, want not found", err)
	}
}

func TestStartErrorsAndCloseIsIdempotent(t *testing.T) {
	s := start(t, Config{})
	// The same port again: both transports are taken.
	other, err := New(Config{Listen: s.Addr(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second server on %s: %v", s.Addr(), err)
	}
	if err := other.Close(); err != nil {
		t.Fatalf("close of a never-started server: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("second Start accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // and once more in t.Cleanup
		t.Fatalf("second close: %v", err)
	}
	c := &mdns.Client{Net: "tcp", Timeout: time.Second}
	if _, _, err := c.Exchange(new(mdns.Msg).SetQuestion("x.", mdns.TypeA), s.Addr()); err == nil {
		t.Fatal("closed server still answers over TCP")
	}
}

func TestCollector(t *testing.T) {
	s := start(t, Config{HostsFile: writeHosts(t, "127.0.0.11 tcpbin.com\n")})
	if err := s.SetRecords(seedRecords); err != nil {
		t.Fatal(err)
	}
	query(t, "udp", s.Addr(), "mes-tcp.svc.meshext.local.", mdns.TypeA)
	query(t, "udp", s.Addr(), "nope.svc.meshext.local.", mdns.TypeA)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			got[mf.GetName()+"/"+m.GetLabel()[0].GetValue()] = v
		}
	}
	want := map[string]float64{
		"meshext_dns_queries_total/answered": 1, "meshext_dns_queries_total/nxdomain": 1,
		"meshext_dns_queries_total/forwarded": 0, "meshext_dns_queries_total/forward_failed": 0,
		"meshext_dns_queries_total/refused": 0, "meshext_dns_queries_total/rate_limited": 0,
		"meshext_dns_records/vip": 3, "meshext_dns_records/hosts": 1,
	}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

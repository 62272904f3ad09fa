package dns

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// bigUpstream answers every A question with n A records, whatever the
// transport or the client's buffer (as a careless upstream would), and
// counts the queries it gets.
func bigUpstream(t *testing.T, network string, n int) (string, *sync.Map) {
	t.Helper()
	seen := &sync.Map{}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		seen.Store(r.Question[0].Name, true)
		m := new(mdns.Msg)
		m.SetReply(r)
		for i := 0; i < n; i++ {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
				A: net.IPv4(192, 0, 2, byte(i)).To4()})
		}
		m.Compress = true
		_ = w.WriteMsg(m)
	})
	return serveTest(t, network, h), seen
}

// rawExchange sends q over UDP from a socket bound to from (host only) and
// returns the reply and both wire sizes.
func rawExchange(t *testing.T, from, to string, q *mdns.Msg) (*mdns.Msg, int, int) {
	t.Helper()
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	laddr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(from, "0"))
	if err != nil {
		t.Fatal(err)
	}
	raddr, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", laddr, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(wire); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply to %s: %v", q.Question[0].Name, err)
	}
	r := new(mdns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return r, len(wire), n
}

func ednsQuery(name string, size uint16) *mdns.Msg {
	q := new(mdns.Msg)
	q.SetQuestion(name, mdns.TypeA)
	q.SetEdns0(size, false)
	return q
}

// Issue 12 item 9: a big upstream answer over UDP is a truncated reply (TC)
// within the client's buffer, not SERVFAIL; over TCP it arrives whole.
func TestLargeForwardedAnswerIsTruncatedOverUDP(t *testing.T) {
	up, _ := bigUpstream(t, "udp", 100) // ~1.6 kB
	upTCP, _ := bigUpstream(t, "tcp", 100)
	s := start(t, Config{Upstreams: []string{up}})
	for _, size := range []uint16{0, 1232} {
		q := ednsQuery("big.example.", size)
		if size == 0 {
			q.Extra = nil
		}
		r, qlen, rlen := rawExchange(t, "127.0.0.1", s.Addr(), q)
		if r.Rcode != mdns.RcodeSuccess || !r.Truncated {
			t.Fatalf("EDNS %d: rcode %s tc=%v, want a truncated NOERROR", size, mdns.RcodeToString[r.Rcode], r.Truncated)
		}
		limit := 512
		if size > 0 {
			limit = int(size)
		}
		if rlen > limit {
			t.Fatalf("EDNS %d: %d-byte reply to a %d-byte query exceeds the client's %d", size, rlen, qlen, limit)
		}
	}
	tcp := start(t, Config{Upstreams: []string{upTCP}})
	if got := answers(query(t, "tcp", tcp.Addr(), "big.example.", mdns.TypeA)); len(got) != 100 {
		t.Fatalf("over TCP: %d answers, want 100", len(got))
	}
}

// Issue 12 item 9: a 44-byte query must not turn into a reply many times its
// size over UDP (reflection). The test measures the factor and logs it.
func TestUDPAmplificationIsBounded(t *testing.T) {
	up, _ := bigUpstream(t, "udp", 155) // ~3.9 kB, as in the issue
	hosts := writeHosts(t, func() string {
		var b strings.Builder
		for i := 0; i < 200; i++ {
			fmt.Fprintf(&b, "192.0.2.%d many.example\n", i)
		}
		return b.String()
	}())
	s := start(t, Config{Upstreams: []string{up}, HostsFile: hosts})
	for _, name := range []string{"x.example.", "many.example."} {
		r, qlen, rlen := rawExchange(t, "127.0.0.1", s.Addr(), ednsQuery(name, 4096))
		factor := float64(rlen) / float64(qlen)
		t.Logf("%s: %d-byte query, %d-byte reply: amplification %.1fx (tc=%v)", name, qlen, rlen, factor, r.Truncated)
		if factor > MaxUDPAmplification {
			t.Errorf("%s: amplification %.1fx over %d", name, factor, MaxUDPAmplification)
		}
		if !r.Truncated {
			t.Errorf("%s: a capped reply must set TC", name)
		}
	}
	// Small answers are whole.
	if err := s.SetRecords(seedRecords); err != nil {
		t.Fatal(err)
	}
	r, _, _ := rawExchange(t, "127.0.0.1", s.Addr(), ednsQuery("mes-tcp.svc.meshext.local.", 4096))
	if r.Truncated || len(answers(r)) != 1 {
		t.Fatalf("small answer: tc=%v answers %v", r.Truncated, answers(r))
	}
}

// Issue 12 item 9: names outside our zones are forwarded only for local
// clients; others get REFUSED and the upstream never sees the query. Our own
// zones are answered for everyone.
func TestForwardsOnlyForLocalClients(t *testing.T) {
	up, seen := bigUpstream(t, "udp", 1)
	// Only 127.0.0.2 counts as local here, so 127.0.0.1 plays a remote client.
	s := start(t, Config{Upstreams: []string{up}, ForwardClients: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	if err := s.SetRecords(seedRecords); err != nil {
		t.Fatal(err)
	}
	r, _, _ := rawExchange(t, "127.0.0.1", s.Addr(), ednsQuery("remote.example.", 1232))
	if r.Rcode != mdns.RcodeRefused || r.RecursionAvailable {
		t.Fatalf("remote client: rcode %s ra=%v, want REFUSED without RA", mdns.RcodeToString[r.Rcode], r.RecursionAvailable)
	}
	if _, asked := seen.Load("remote.example."); asked {
		t.Fatal("the upstream was asked on behalf of a remote client")
	}
	r, _, _ = rawExchange(t, "127.0.0.1", s.Addr(), ednsQuery("mes-tcp.svc.meshext.local.", 1232))
	if got := answers(r); len(got) != 1 || r.RecursionAvailable {
		t.Fatalf("our zone for a remote client: %v ra=%v", got, r.RecursionAvailable)
	}
	r, _, _ = rawExchange(t, "127.0.0.1", s.Addr(), ednsQuery("nope.svc.meshext.local.", 1232))
	if r.Rcode != mdns.RcodeNameError || !r.Authoritative || len(r.Ns) != 1 {
		t.Fatalf("unknown name in our zone for a remote client: rcode %s aa=%v", mdns.RcodeToString[r.Rcode], r.Authoritative)
	}
	r, _, _ = rawExchange(t, "127.0.0.2", s.Addr(), ednsQuery("local.example.", 1232))
	if len(answers(r)) != 1 || !r.RecursionAvailable {
		t.Fatalf("local client: rcode %s answers %v ra=%v", mdns.RcodeToString[r.Rcode], answers(r), r.RecursionAvailable)
	}
	if st := s.Stats(); st.Refused != 1 || st.Forwarded != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// The default notion of "local": loopback, and the networks of the
// interface holding the listen address (every interface for a wildcard).
func TestLocalNetworks(t *testing.T) {
	lo := localNetworks(netip.MustParseAddr("127.0.0.1"))
	for _, a := range []string{"127.0.0.1", "127.0.0.53", "::1"} {
		if !containsAddrIn(lo, netip.MustParseAddr(a)) {
			t.Errorf("listen 127.0.0.1: %s not local (%v)", a, lo)
		}
	}
	for _, a := range []string{"192.0.2.1", "2001:db8::1", "10.11.12.13"} {
		if containsAddrIn(lo, netip.MustParseAddr(a)) {
			t.Errorf("listen 127.0.0.1: %s local (%v)", a, lo)
		}
	}
	// A wildcard listener: every interface's networks.
	wild := localNetworks(netip.IPv4Unspecified())
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var onLink []netip.Prefix
	for _, ia := range ifaddrs {
		a, p, ok := interfacePrefix(ia)
		if !ok {
			continue
		}
		onLink = append(onLink, p)
		if !containsAddrIn(wild, a) {
			t.Errorf("listen 0.0.0.0: own address %s not local (%v)", a, wild)
		}
	}
	// Documentation addresses, unless this machine happens to sit on one.
	checked := 0
	for _, a := range []string{"192.0.2.1", "198.51.100.1", "203.0.113.77", "2001:db8::1"} {
		if containsAddrIn(onLink, netip.MustParseAddr(a)) {
			continue
		}
		checked++
		if containsAddrIn(wild, netip.MustParseAddr(a)) {
			t.Errorf("listen 0.0.0.0: %s local (%v)", a, wild)
		}
	}
	if checked == 0 {
		t.Fatal("every documentation address is on-link here")
	}
}

// Without an upstream, names outside our zones are REFUSED: we offer no
// recursion (SERVFAIL would say a resolver failed, and invite retries).
func TestNoUpstreamRefuses(t *testing.T) {
	s := start(t, Config{})
	r := query(t, "udp", s.Addr(), "example.org.", mdns.TypeA)
	if r.Rcode != mdns.RcodeRefused || r.RecursionAvailable {
		t.Fatalf("rcode %s ra=%v, want REFUSED without RA", mdns.RcodeToString[r.Rcode], r.RecursionAvailable)
	}
}

// Per-source rate limit: a source over its budget is dropped over UDP and
// REFUSED over TCP; another source is unaffected. Loopback is normally
// exempt (it is the host's own Envoy and stub resolver, one address for all
// of them), so the test turns the exemption off to exercise the limiter.
func TestRateLimitPerSource(t *testing.T) {
	s := startWith(t, Config{RateLimit: 20, RateBurst: 5}, func(s *Server) { s.exemptLoopback = false })
	if err := s.SetRecords(seedRecords); err != nil {
		t.Fatal(err)
	}
	// 30 queries at once from 127.0.0.3, far faster than 20/s.
	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 30; i++ {
		q := new(mdns.Msg).SetQuestion("mes-tcp.svc.meshext.local.", mdns.TypeA)
		q.Id = uint16(i + 1)
		wire, _ := q.Pack()
		if _, err := conn.Write(wire); err != nil {
			t.Fatal(err)
		}
	}
	answered := 0
	buf := make([]byte, 512)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := conn.Read(buf); err != nil {
			break // no more replies
		}
		answered++
	}
	if answered < 5 || answered > 8 {
		t.Fatalf("%d of 30 rapid queries answered, want about the burst of 5", answered)
	}
	// Another source still gets answers.
	other := &mdns.Client{Net: "udp", Timeout: time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 4)}}}
	if r, _, err := other.Exchange(new(mdns.Msg).SetQuestion("mes-tcp.svc.meshext.local.", mdns.TypeA), s.Addr()); err != nil || len(r.Answer) != 1 {
		t.Fatalf("another source: %v %v", r, err)
	}
	// Over TCP the limited source learns it is limited.
	tc := &mdns.Client{Net: "tcp", Timeout: time.Second, Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}}
	refused := 0
	for i := 0; i < 20; i++ {
		if r, _, err := tc.Exchange(new(mdns.Msg).SetQuestion("mes-tcp.svc.meshext.local.", mdns.TypeA), s.Addr()); err == nil && r.Rcode == mdns.RcodeRefused {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("TCP queries over the limit were not refused")
	}
	if st := s.Stats(); st.RateLimited == 0 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("UDP: %d of 30 answered; TCP: %d of 20 refused; stats %+v", answered, refused, s.Stats())
}

// The per-source table is bounded: a flood from many sources shares one
// overflow bucket once the table is full.
func TestRateLimiterTableIsBounded(t *testing.T) {
	l := newLimiter(10, 10, 100)
	now := time.Unix(1000, 0)
	for i := 0; i < 10000; i++ {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.allow(src, now)
	}
	if n := l.size(); n > 100 {
		t.Fatalf("%d sources tracked, want at most 100", n)
	}
	// Idle sources are forgotten once their buckets are full again, making room.
	later := now.Add(10 * time.Second)
	if !l.allow(netip.MustParseAddr("192.0.2.1"), later) {
		t.Fatal("a new source after the flood is limited")
	}
	if n := l.size(); n > 2 {
		t.Fatalf("%d sources tracked after they all went idle", n)
	}
	// IPv6 sources share a bucket per /64.
	a, b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:2")
	for i := 0; i < 10; i++ {
		l.allow(a, later)
	}
	if l.allow(b, later) {
		t.Fatal("another address of the same /64 has its own bucket")
	}
}

// A slow upstream holds a goroutine per forwarded query; their number is
// bounded and the rest get SERVFAIL at once.
func TestConcurrentForwardsAreBounded(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	s := start(t, Config{Upstreams: []string{silent.LocalAddr().String()}, ForwardTimeout: 2 * time.Second, MaxForwards: 2})
	var wg sync.WaitGroup
	fast := make(chan time.Duration, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			begin := time.Now()
			c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
			r, _, err := c.Exchange(new(mdns.Msg).SetQuestion(fmt.Sprintf("q%d.example.", i), mdns.TypeA), s.Addr())
			if err == nil && r.Rcode == mdns.RcodeServerFailure {
				fast <- time.Since(begin)
			}
		}(i)
	}
	wg.Wait()
	close(fast)
	quick := 0
	for d := range fast {
		if d < time.Second {
			quick++
		}
	}
	if quick < 4 {
		t.Fatalf("%d of 6 queries failed fast, want the 4 beyond MaxForwards=2", quick)
	}
}

// The hosts file is read like the drop directory: regular files only, with
// a size limit, never blocking on a FIFO.
func TestHostsFileSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("# comment\n", MaxHostsFileBytes/10+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{fifo: "not a regular file", zero: "not a regular file", dir: "not a regular file", big: "too large"} {
		done := make(chan error, 1)
		go func() { _, err := ParseHostsFile(file); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want an error with %q", file, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: reading blocked", file)
		}
	}
	// A symlink to a regular file is fine.
	real := writeHosts(t, "127.0.0.11 tcpbin.com\n")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if h, err := ParseHostsFile(link); err != nil || len(h) != 1 {
		t.Fatalf("symlink to a hosts file: %v %v", h, err)
	}
}

// startWith is start with a hook between New and Start.
func startWith(t *testing.T, cfg Config, hook func(*Server)) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hook(s)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Open TCP connections are bounded per source: the 17th from one address is
// closed at once, another address still connects, and closing frees a slot.
func TestTCPConnectionsPerSourceAreBounded(t *testing.T) {
	s := startWith(t, Config{}, func(s *Server) { s.exemptLoopback = false })
	dial := func(ip net.IP) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedByServer: a read sees EOF at once rather than waiting.
	closedByServer := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
	var conns []net.Conn
	for i := 0; i < maxTCPPerSource+4; i++ {
		conns = append(conns, dial(net.IPv4(127, 0, 0, 5)))
	}
	// All at once: the server itself closes silent connections after 2 s.
	var closed atomic.Int32
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if closedByServer(c) {
				closed.Add(1)
			}
		}()
	}
	wg.Wait()
	if closed.Load() != 4 {
		t.Fatalf("%d of %d connections from one source closed, want the 4 beyond %d", closed.Load(), len(conns), maxTCPPerSource)
	}
	if closedByServer(dial(net.IPv4(127, 0, 0, 6))) {
		t.Fatal("another source was refused")
	}
	conns[0].Close()
	deadline := time.Now().Add(3 * time.Second)
	for closedByServer(dial(net.IPv4(127, 0, 0, 5))) {
		if time.Now().After(deadline) {
			t.Fatal("a closed connection did not free its slot")
		}
	}
	// Queries still work over a kept connection.
	c := &mdns.Client{Net: "tcp", Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 7)}}}
	if r, _, err := c.Exchange(new(mdns.Msg).SetQuestion("x.example.", mdns.TypeA), s.Addr()); err != nil || r.Rcode != mdns.RcodeRefused {
		t.Fatalf("query over TCP: %v %v", r, err)
	}
}

func TestParseClientNetworks(t *testing.T) {
	got, err := ParseClientNetworks(" 10.1.2.3/16, 192.0.2.7 ,fd00::/48,::ffff:198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[10.1.0.0/16 192.0.2.7/32 fd00::/48 198.51.100.1/32]" {
		t.Fatalf("got %v", got)
	}
	if _, err := ParseClientNetworks("10.0.0.0/8,lan"); err == nil || !strings.Contains(err.Error(), `"lan"`) {
		t.Fatalf("bad network: %v", err)
	}
}

// A query's zone look-up costs its labels, not the number of zones (one per
// generated hostname's parent, so as many as the services): the longest
// zone still wins.
func TestZoneOfWithManyZones(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0", Zones: []string{"mesh", "b.mesh"}})
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]netip.Addr{}
	for i := 0; i < 10000; i++ {
		recs[fmt.Sprintf("svc.ns%d.example", i)] = netip.AddrFrom4([4]byte{242, 0, byte(i >> 8), byte(i)})
	}
	if err := s.SetRecords(recs); err != nil {
		t.Fatal(err)
	}
	snap := s.snap.Load()
	for name, want := range map[string]string{
		"x.b.mesh": "b.mesh", "b.mesh": "b.mesh", "x.a.mesh": "mesh", "mesh": "mesh", "xmesh": "",
		"other.ns9999.example": "ns9999.example", "example": "", "": "",
	} {
		if got := snap.zoneOf(name); got != want {
			t.Errorf("zoneOf(%q) = %q, want %q", name, got, want)
		}
	}
}

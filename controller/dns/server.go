// Package dns is meshext's embedded DNS server. It answers the hostnames the
// HostnameGenerators produce with their VIPs, says NXDOMAIN for other names
// inside those zones, serves optional static overrides from a hosts file, and
// forwards everything else to upstream resolvers, for local clients only.
// Envoy's DNS clusters and the user's clients can both point at it.
//
// It is built to be reachable by hostile clients: replies over UDP fit the
// client's buffer and are at most MaxUDPAmplification times the query (else
// truncated, TC set, so the client retries over TCP, where the source is
// verified); each source has a token bucket; forwarded queries in flight are
// bounded.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Defaults; Kuma and Istio both hand out VIP answers with a 30 s TTL.
const (
	DefaultTTL            = 30 * time.Second
	DefaultForwardTimeout = 2 * time.Second
	// DefaultRateLimit is queries per second per source; the burst is twice
	// that. An Envoy with a thousand DNS clusters refreshing every 5 s asks
	// 200/s, and it asks from loopback, which is exempt anyway.
	DefaultRateLimit = 200
	// DefaultMaxForwards bounds forwarded queries in flight (each holds a
	// goroutine for up to len(Upstreams) x ForwardTimeout).
	DefaultMaxForwards = 256
	// MaxUDPAmplification bounds a UDP reply to this many times the size of
	// its query: a spoofed source gains little by reflecting off us. A
	// typical answer (a few A records, a short CNAME chain) is 2-6 times.
	MaxUDPAmplification = 10
	// maxRateSources bounds the rate limiter's table (about 100 bytes a source).
	maxRateSources = 10000
	// maxTCPPerSource and maxTCPConns bound open TCP connections (loopback
	// exempt); the server closes idle ones after 8 s.
	maxTCPPerSource = 16
	maxTCPConns     = 1024
)

// Config configures a Server. Only Listen is required.
type Config struct {
	// Listen is host:port for both UDP and TCP. Port 0 picks one free port
	// that both transports share (tests).
	Listen string
	// Upstreams are resolvers ("host" or "host:port", port 53 by default)
	// asked, in order, about names outside our zones, on behalf of
	// ForwardClients only. Empty means such names get REFUSED.
	Upstreams []string
	// ForwardClients are the client networks whose queries may be
	// forwarded; others get REFUSED. nil means local clients: loopback, the
	// host's own addresses and the networks of the interface holding the
	// listen address (of every interface for a wildcard listen address).
	ForwardClients []netip.Prefix
	// RateLimit is queries per second per source (IPv4 address or IPv6
	// /64; loopback is exempt), RateBurst the bucket size. Over the limit a
	// UDP query is dropped and a TCP query REFUSED. 0 means DefaultRateLimit
	// (burst twice the rate), negative means no limit.
	RateLimit float64
	RateBurst int
	// MaxForwards bounds forwarded queries in flight; beyond it SERVFAIL at
	// once. 0 means DefaultMaxForwards.
	MaxForwards int
	// Zones we answer authoritatively (NXDOMAIN for unknown names) in
	// addition to the zones derived from the records: each record's parent
	// domain when it has at least two labels (mes-tcp.svc.meshext.local →
	// svc.meshext.local). A one-label parent such as "local" is never derived,
	// so a template like "{{.DisplayName}}.com" cannot black-hole a public TLD.
	Zones []string
	// HostsFile is an optional /etc/hosts-format file of static overrides.
	// Its names win over VIP records and forwarding.
	HostsFile string
	// TTL of every answer we make (and of the SOA minimum for negative
	// answers). Zero means DefaultTTL.
	TTL time.Duration
	// ForwardTimeout bounds each upstream attempt, so a query waits at most
	// len(Upstreams) × ForwardTimeout. Zero means DefaultForwardTimeout.
	ForwardTimeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Stats are cumulative counters of how queries were answered.
type Stats struct {
	Answered      uint64 // from VIP records or the hosts file (including NODATA)
	NXDomain      uint64 // unknown names inside our zones
	Forwarded     uint64 // answered by an upstream
	ForwardFailed uint64 // every upstream failed, or too many in flight: SERVFAIL
	Refused       uint64 // outside our zones, for a client we do not forward for (or no upstream)
	RateLimited   uint64 // over the source's rate: dropped (UDP) or REFUSED (TCP)
}

// snapshot is the immutable record set a query reads; SetRecords and
// ReloadHosts swap a whole new one in.
type snapshot struct {
	records map[string]netip.Addr
	hosts   map[string][]netip.Addr
	zones   []string // lower case, no trailing dot
	zoneSet map[string]bool
}

// Server is the embedded DNS server. Create it with New, then Start.
type Server struct {
	cfg       Config
	ttl       uint32
	upstreams []string
	zones     []string // configured zones, normalised
	log       *slog.Logger

	snap atomic.Pointer[snapshot]
	mu   sync.Mutex // serialises writers of snap

	udp, tcp  *mdns.Server
	addr      string
	closeOnce sync.Once
	closeErr  error

	limiter  *limiter        // nil: no rate limit
	clients  *forwardClients // who may have names forwarded
	forwards chan struct{}   // semaphore of forwards in flight
	tcpLimit *connLimitListener
	// exemptLoopback spares loopback clients the rate and connection
	// limits: they are the host's own Envoy and stub resolver, all behind
	// one address (limiting it would let one local process starve the
	// others), and loopback cannot be spoofed from outside. Tests clear it.
	exemptLoopback bool

	answered, nxdomain, forwarded, forwardFailed, refused, rateLimited atomic.Uint64
}

// New validates cfg and loads the hosts file; it does not listen yet.
func New(cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		return nil, errors.New("dns: listen address is required")
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return nil, fmt.Errorf("dns: listen address %q: %w", cfg.Listen, err)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < time.Second || cfg.TTL > 24*time.Hour {
		return nil, fmt.Errorf("dns: TTL %s outside 1s..24h", cfg.TTL)
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	if cfg.ForwardTimeout < 0 {
		return nil, fmt.Errorf("dns: negative forward timeout %s", cfg.ForwardTimeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.RateBurst == 0 {
		cfg.RateBurst = max(1, int(2*cfg.RateLimit))
	}
	if cfg.RateBurst < 0 {
		return nil, fmt.Errorf("dns: negative rate burst %d", cfg.RateBurst)
	}
	if cfg.MaxForwards == 0 {
		cfg.MaxForwards = DefaultMaxForwards
	}
	if cfg.MaxForwards < 0 {
		return nil, fmt.Errorf("dns: negative MaxForwards %d", cfg.MaxForwards)
	}
	s := &Server{cfg: cfg, ttl: uint32(cfg.TTL / time.Second), log: cfg.Logger,
		clients: &forwardClients{fixed: cfg.ForwardClients}, forwards: make(chan struct{}, cfg.MaxForwards), exemptLoopback: true}
	if cfg.RateLimit > 0 {
		s.limiter = newLimiter(cfg.RateLimit, cfg.RateBurst, maxRateSources)
	}
	for _, u := range cfg.Upstreams {
		hp, err := normalizeUpstream(u)
		if err != nil {
			return nil, err
		}
		s.upstreams = append(s.upstreams, hp)
	}
	for _, z := range cfg.Zones {
		n, err := normalizeName(z)
		if err != nil {
			return nil, fmt.Errorf("dns: zone: %w", err)
		}
		s.zones = append(s.zones, n)
	}
	snap := &snapshot{records: map[string]netip.Addr{}, hosts: map[string][]netip.Addr{}}
	if cfg.HostsFile != "" {
		h, err := ParseHostsFile(cfg.HostsFile)
		if err != nil {
			return nil, err
		}
		snap.hosts = h
	}
	snap.zones, snap.zoneSet = s.zonesFor(snap.records)
	s.snap.Store(snap)
	return s, nil
}

// ParseUpstreams splits a comma-separated --dns-upstream value into
// resolver addresses, adding port 53 where none is given.
func ParseUpstreams(csv string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(csv, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		hp, err := normalizeUpstream(part)
		if err != nil {
			return nil, err
		}
		out = append(out, hp)
	}
	return out, nil
}

// SystemUpstreams returns the nameservers of a resolv.conf file (usually
// /etc/resolv.conf), leaving out listen so the server never forwards to itself.
func SystemUpstreams(resolvConf, listen string) ([]string, error) {
	cc, err := mdns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("dns: %s: %w", resolvConf, err)
	}
	var out []string
	for _, ns := range cc.Servers {
		hp := net.JoinHostPort(ns, cc.Port)
		if hp == listen {
			continue
		}
		out = append(out, hp)
	}
	return out, nil
}

// ParseClientNetworks splits a comma-separated --dns-forward-clients value
// into prefixes; a bare address is a single-address prefix.
func ParseClientNetworks(csv string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(csv, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		if a, err := netip.ParseAddr(part); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("dns: client network %q: want a CIDR or an IP address", part)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func normalizeUpstream(u string) (string, error) {
	u = strings.TrimSpace(u)
	host, port, err := net.SplitHostPort(u)
	if err != nil { // no port: the whole thing must be an IP
		host, port = strings.Trim(u, "[]"), "53"
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return "", fmt.Errorf("dns: upstream %q: want an IP address with optional :port", u)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("dns: upstream %q: bad port", u)
	}
	return net.JoinHostPort(host, port), nil
}

// zonesFor is the configured zones plus the derived ones (see Config.Zones),
// as a list and as a set.
func (s *Server) zonesFor(records map[string]netip.Addr) ([]string, map[string]bool) {
	seen := map[string]bool{}
	var zones []string
	add := func(z string) {
		if !seen[z] {
			seen[z] = true
			zones = append(zones, z)
		}
	}
	for _, z := range s.zones {
		add(z)
	}
	for name := range records {
		if _, parent, ok := strings.Cut(name, "."); ok && strings.Contains(parent, ".") {
			add(parent)
		}
	}
	return zones, seen
}

// SetRecords atomically replaces the VIP records (hostname → VIP). Names are
// matched case-insensitively with or without a trailing dot. On an invalid
// entry nothing changes and the error names it.
func (s *Server) SetRecords(records map[string]netip.Addr) error {
	next := make(map[string]netip.Addr, len(records))
	for name, addr := range records {
		n, err := normalizeName(name)
		if err != nil {
			return fmt.Errorf("dns: record: %w", err)
		}
		if !addr.IsValid() {
			return fmt.Errorf("dns: record %q: invalid address", name)
		}
		next[n] = addr.Unmap().WithZone("")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	zones, zoneSet := s.zonesFor(next)
	s.snap.Store(&snapshot{records: next, hosts: old.hosts, zones: zones, zoneSet: zoneSet})
	return nil
}

// Records returns a copy of the current VIP records.
func (s *Server) Records() map[string]netip.Addr {
	cur := s.snap.Load().records
	out := make(map[string]netip.Addr, len(cur))
	for k, v := range cur {
		out[k] = v
	}
	return out
}

// Zones returns the zones currently answered authoritatively.
func (s *Server) Zones() []string {
	return append([]string(nil), s.snap.Load().zones...)
}

// ReloadHosts re-reads Config.HostsFile; on error the old overrides stay.
func (s *Server) ReloadHosts() error {
	if s.cfg.HostsFile == "" {
		return nil
	}
	h, err := ParseHostsFile(s.cfg.HostsFile)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	s.snap.Store(&snapshot{records: old.records, hosts: h, zones: old.zones, zoneSet: old.zoneSet})
	return nil
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{
		Answered:      s.answered.Load(),
		NXDomain:      s.nxdomain.Load(),
		Forwarded:     s.forwarded.Load(),
		ForwardFailed: s.forwardFailed.Load(),
		Refused:       s.refused.Load(),
		RateLimited:   s.rateLimited.Load(),
	}
}

// Start binds UDP and TCP on the same port and serves in the background
// until Close.
func (s *Server) Start() error {
	if s.udp != nil {
		return errors.New("dns: already started")
	}
	host, port, _ := net.SplitHostPort(s.cfg.Listen)
	// With port 0 the kernel picks the UDP port; TCP may find it taken by
	// someone else, so try a few times (bounded).
	attempts := 1
	if port == "0" {
		attempts = 10
	}
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for i := 0; i < attempts; i++ {
		pc, err = net.ListenPacket("udp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("dns: listen udp %s: %w", s.cfg.Listen, err)
		}
		tcpAddr := net.JoinHostPort(host, strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port))
		ln, err = net.Listen("tcp", tcpAddr)
		if err == nil {
			break
		}
		pc.Close()
		err = fmt.Errorf("dns: listen tcp %s: %w", tcpAddr, err)
	}
	if err != nil {
		return err
	}
	s.clients.listen = ln.Addr().(*net.TCPAddr).AddrPort().Addr()
	s.tcpLimit = newConnLimitListener(ln, maxTCPPerSource, maxTCPConns, s.exemptLoopback)
	udp := &mdns.Server{PacketConn: pc, Handler: s}
	tcp := &mdns.Server{Listener: s.tcpLimit, Handler: s}
	var running []*mdns.Server
	for _, srv := range []*mdns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		errc := make(chan error, 1)
		go func() { errc <- srv.ActivateAndServe() }()
		select {
		case <-started:
			running = append(running, srv)
			continue
		case err = <-errc:
			err = fmt.Errorf("dns: serve: %w", err)
		case <-time.After(5 * time.Second):
			err = errors.New("dns: server did not start within 5s")
		}
		for _, r := range running {
			_ = r.Shutdown()
		}
		pc.Close()
		ln.Close()
		return err
	}
	s.udp, s.tcp, s.addr = udp, tcp, ln.Addr().String()
	s.log.Info("dns server listening", "addr", s.addr, "upstreams", s.upstreams, "hosts_file", s.cfg.HostsFile)
	return nil
}

// Run starts the server and closes it when ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}

// Addr is the bound host:port (UDP and TCP), valid after Start.
func (s *Server) Addr() string { return s.addr }

// Close stops both listeners, waiting up to 5 s for in-flight queries.
// Closing a server that never started, or twice, is a no-op.
func (s *Server) Close() error {
	if s.udp == nil {
		return nil
	}
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.closeErr = errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
	})
	return s.closeErr
}

// ServeDNS answers one query; it implements miekg/dns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	src := remoteAddr(w)
	if !(s.exemptLoopback && src.IsLoopback()) && !s.limiter.allow(src, time.Now()) {
		s.rateLimited.Add(1)
		// A UDP source may be spoofed, so it gets silence; over TCP the
		// source is real and learns it is limited.
		if !isUDP(w) {
			m := new(mdns.Msg)
			m.SetRcode(r, mdns.RcodeRefused)
			s.reply(w, r, m)
		}
		return
	}
	if r.Opcode != mdns.OpcodeQuery || len(r.Question) != 1 {
		m := new(mdns.Msg)
		m.SetRcode(r, mdns.RcodeNotImplemented)
		if len(r.Question) != 1 {
			m.SetRcode(r, mdns.RcodeFormatError)
		}
		s.reply(w, r, m)
		return
	}
	q := r.Question[0]
	name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
	snap := s.snap.Load()

	if q.Qclass == mdns.ClassINET || q.Qclass == mdns.ClassANY {
		if addrs, ok := snap.hosts[name]; ok {
			s.answer(w, r, addrs, false, snap, src)
			return
		}
		if addr, ok := snap.records[name]; ok {
			s.answer(w, r, []netip.Addr{addr}, true, snap, src)
			return
		}
		if zone := snap.zoneOf(name); zone == name {
			// The zone apex exists: SOA for SOA queries, NODATA otherwise.
			s.answered.Add(1)
			m := new(mdns.Msg)
			m.SetReply(r)
			m.Authoritative = true
			m.RecursionAvailable = s.recursionFor(src)
			if q.Qtype == mdns.TypeSOA || q.Qtype == mdns.TypeANY {
				m.Answer = []mdns.RR{s.soa(zone)}
			} else {
				m.Ns = []mdns.RR{s.soa(zone)}
			}
			s.reply(w, r, m)
			return
		} else if zone != "" {
			s.nxdomain.Add(1)
			m := new(mdns.Msg)
			m.SetRcode(r, mdns.RcodeNameError)
			m.Authoritative = true
			m.RecursionAvailable = s.recursionFor(src)
			m.Ns = []mdns.RR{s.soa(zone)}
			s.reply(w, r, m)
			return
		}
	}
	s.forward(w, r, src)
}

// recursionFor reports whether we forward for src (the RA bit we send it).
func (s *Server) recursionFor(src netip.Addr) bool {
	return len(s.upstreams) > 0 && s.clients.allowed(src)
}

// reply writes m. Over UDP it first truncates m (TC set) to the client's
// buffer (its EDNS0 size, else 512), and a reply still larger than
// MaxUDPAmplification times the query to its header and question alone.
func (s *Server) reply(w mdns.ResponseWriter, r, m *mdns.Msg) {
	if isUDP(w) {
		size := mdns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = max(int(o.UDPSize()), mdns.MinMsgSize)
		}
		m.Truncate(size)
		if m.Len() > MaxUDPAmplification*r.Len() {
			opt := m.IsEdns0()
			m.Answer, m.Ns, m.Extra = nil, nil, nil
			if opt != nil {
				m.Extra = []mdns.RR{opt}
			}
			m.Truncated = true
		}
	}
	_ = w.WriteMsg(m)
}

func isUDP(w mdns.ResponseWriter) bool {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	return udp
}

func remoteAddr(w mdns.ResponseWriter) netip.Addr {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// zoneOf returns the longest of our zones containing name, or "". It looks
// up name and each of its parents, so a query costs its label count, not
// the number of zones.
func (sn *snapshot) zoneOf(name string) string {
	for n := name; n != ""; {
		if sn.zoneSet[n] {
			return n
		}
		_, n, _ = strings.Cut(n, ".")
	}
	return ""
}

// answer writes A/AAAA records for addrs. VIP records (mapV4) also answer
// AAAA with the IPv4-mapped form ::ffff:a.b.c.d, as Kuma does, so IPv6-first
// clients still reach an IPv4 VIP; hosts-file names answer only what the
// file lists, like /etc/hosts.
func (s *Server) answer(w mdns.ResponseWriter, r *mdns.Msg, addrs []netip.Addr, mapV4 bool, snap *snapshot, src netip.Addr) {
	s.answered.Add(1)
	q := r.Question[0]
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = s.recursionFor(src)
	hdr := func(t uint16) mdns.RR_Header {
		// Echo the question's spelling: resolvers using 0x20 case randomisation compare it.
		return mdns.RR_Header{Name: q.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: s.ttl}
	}
	wantA := q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY
	wantAAAA := q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case a.Is4() && wantA:
			m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(mdns.TypeA), A: a.AsSlice()})
		case a.Is4() && wantAAAA && mapV4:
			b := a.As16() // As16 of an IPv4 address is its ::ffff: mapped form
			m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: b[:]})
		case a.Is6() && wantAAAA:
			m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	if len(m.Answer) == 0 { // NODATA: the name exists, not this type
		zone := snap.zoneOf(strings.TrimSuffix(strings.ToLower(q.Name), "."))
		if zone == "" {
			zone = strings.TrimSuffix(strings.ToLower(q.Name), ".")
		}
		m.Ns = []mdns.RR{s.soa(zone)}
	}
	s.reply(w, r, m)
}

// soa is a synthetic SOA for negative answers; its minimum is our TTL so
// resolvers cache NXDOMAIN no longer than a positive answer.
func (s *Server) soa(zone string) mdns.RR {
	z := mdns.Fqdn(zone)
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: z, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: s.ttl},
		Ns:      "ns." + z,
		Mbox:    "hostmaster." + z,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  s.ttl,
	}
}

// forward relays r to the upstreams in order over the transport the client
// used, for clients we forward for; others, and every client when there is
// no upstream, get REFUSED. The reply goes through reply, so a big answer
// reaches a UDP client truncated (it retries over TCP).
func (s *Server) forward(w mdns.ResponseWriter, r *mdns.Msg, src netip.Addr) {
	if !s.recursionFor(src) {
		s.refused.Add(1)
		m := new(mdns.Msg)
		m.SetRcode(r, mdns.RcodeRefused)
		s.reply(w, r, m)
		return
	}
	select {
	case s.forwards <- struct{}{}:
		defer func() { <-s.forwards }()
	default:
		s.forwardFailed.Add(1)
		s.log.Debug("dns forward refused: too many in flight", "limit", cap(s.forwards))
		m := new(mdns.Msg)
		m.SetRcode(r, mdns.RcodeServerFailure)
		m.RecursionAvailable = true
		s.reply(w, r, m)
		return
	}
	network := "udp"
	if !isUDP(w) {
		network = "tcp"
	}
	for _, up := range s.upstreams {
		resp, err := s.exchange(network, up, r)
		if err != nil {
			s.log.Debug("dns forward failed", "upstream", up, "name", r.Question[0].Name, "err", err)
			continue
		}
		s.forwarded.Add(1)
		resp.Id = r.Id
		resp.RecursionAvailable = true // we recursed for this client
		s.reply(w, r, resp)
		return
	}
	s.forwardFailed.Add(1)
	m := new(mdns.Msg)
	m.SetRcode(r, mdns.RcodeServerFailure)
	m.RecursionAvailable = true
	s.reply(w, r, m)
}

// exchange asks one upstream. Over UDP it reads into a 64 KiB buffer,
// whatever size the client asked for, so an upstream that answers bigger
// than asked is truncated by reply instead of failing to parse.
func (s *Server) exchange(network, upstream string, r *mdns.Msg) (*mdns.Msg, error) {
	c := &mdns.Client{Net: network, Timeout: s.cfg.ForwardTimeout}
	if network != "udp" {
		resp, _, err := c.Exchange(r, upstream)
		return resp, err
	}
	conn, err := c.Dial(upstream)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(s.cfg.ForwardTimeout))
	conn.UDPSize = mdns.MaxMsgSize
	if err := conn.WriteMsg(r); err != nil {
		return nil, err
	}
	for { // bounded by the deadline
		resp, err := conn.ReadMsg()
		if err != nil {
			return nil, err
		}
		if resp.Id == r.Id {
			return resp, nil
		}
	}
}

package dns

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// limiter is a token bucket per source: an IPv4 address, or an IPv6 /64
// (what one host usually holds, so rotating addresses buys nothing). The
// table holds at most max sources; when it is full, idle sources (whose
// buckets have refilled, so forgetting them changes nothing) are swept at
// most once a second, and sources that still find no room share one
// overflow bucket, so a flood of spoofed sources costs bounded memory and
// is limited as a whole.
type limiter struct {
	rate, burst float64
	max         int

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	overflow  bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, max int) *limiter {
	return &limiter{
		rate: rate, burst: float64(burst), max: max,
		buckets:  map[netip.Addr]*bucket{},
		overflow: bucket{tokens: float64(burst)},
	}
}

// allow takes a token for src at now; a nil limiter allows everything.
func (l *limiter) allow(src netip.Addr, now time.Time) bool {
	if l == nil {
		return true
	}
	key := sourceKey(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max && now.Sub(l.lastSweep) >= time.Second {
			l.sweep(now)
		}
		if len(l.buckets) >= l.max {
			b = &l.overflow
		} else {
			b = &bucket{tokens: l.burst, last: now}
			l.buckets[key] = b
		}
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets the sources whose buckets are full again.
func (l *limiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}

func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// forwardClients decides who may have names outside our zones forwarded.
type forwardClients struct {
	fixed  []netip.Prefix // Config.ForwardClients; nil = local networks
	listen netip.Addr     // the bound address, for the local networks

	mu      sync.Mutex
	nets    []netip.Prefix
	updated time.Time
}

// allowed reports whether src may use forwarding. The local networks are
// recomputed on a miss at most every 10 s, so interfaces that come up later
// are picked up without letting a remote flood cost more than one look-up
// per 10 s.
func (f *forwardClients) allowed(src netip.Addr) bool {
	src = src.Unmap().WithZone("")
	if f.fixed != nil {
		return containsAddrIn(f.fixed, src)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if containsAddrIn(f.nets, src) {
		return true
	}
	if time.Since(f.updated) < 10*time.Second {
		return false
	}
	f.nets, f.updated = localNetworks(f.listen), time.Now()
	return containsAddrIn(f.nets, src)
}

// localNetworks is who counts as a local client of a server bound to
// listen: loopback, the host's own addresses, and the networks of the
// interface holding listen (of every interface when listen is a wildcard
// address), i.e. hosts on the same link, such as containers on a bridge.
func localNetworks(listen netip.Addr) []netip.Prefix {
	listen = listen.Unmap().WithZone("")
	nets := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nets
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		holdsListen := listen.IsUnspecified()
		var onLink []netip.Prefix
		for _, a := range addrs {
			ip, p, ok := interfacePrefix(a)
			if !ok {
				continue
			}
			nets = append(nets, netip.PrefixFrom(ip, ip.BitLen())) // the host itself
			onLink = append(onLink, p)
			if ip == listen {
				holdsListen = true
			}
		}
		if holdsListen {
			nets = append(nets, onLink...)
		}
	}
	return nets
}

// interfacePrefix is an interface address and its on-link network.
func interfacePrefix(a net.Addr) (netip.Addr, netip.Prefix, bool) {
	ipn, ok := a.(*net.IPNet)
	if !ok {
		return netip.Addr{}, netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(ipn.IP)
	if !ok {
		return netip.Addr{}, netip.Prefix{}, false
	}
	ip = ip.Unmap()
	ones, bits := ipn.Mask.Size()
	if bits != ip.BitLen() {
		return netip.Addr{}, netip.Prefix{}, false
	}
	return ip, netip.PrefixFrom(ip, ones).Masked(), true
}

func containsAddrIn(nets []netip.Prefix, a netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// sourceKey is what limits count by: an IPv4 address or an IPv6 /64.
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		a = netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a
}

// connLimitListener bounds open TCP connections, per source and in total
// (loopback optionally exempt, as for the rate limit): a connection beyond either is
// closed as soon as it is accepted, so idle connections, each holding a
// goroutine and a descriptor until the server's idle timeout, cannot pile up.
type connLimitListener struct {
	net.Listener
	perSource, total int
	exemptLoopback   bool

	mu   sync.Mutex
	open int
	by   map[netip.Addr]int // at most total entries
}

func newConnLimitListener(l net.Listener, perSource, total int, exemptLoopback bool) *connLimitListener {
	return &connLimitListener{Listener: l, perSource: perSource, total: total, exemptLoopback: exemptLoopback, by: map[netip.Addr]int{}}
}

func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var src netip.Addr
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			src = a.AddrPort().Addr().Unmap()
		}
		if l.exemptLoopback && src.IsLoopback() {
			return c, nil
		}
		key := sourceKey(src)
		l.mu.Lock()
		ok := l.open < l.total && l.by[key] < l.perSource
		if ok {
			l.open++
			l.by[key]++
		}
		l.mu.Unlock()
		if !ok {
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, done: func() { l.release(key) }}, nil
	}
}

func (l *connLimitListener) release(key netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.by[key]--; l.by[key] <= 0 {
		delete(l.by, key)
	}
}

type limitedConn struct {
	net.Conn
	once sync.Once
	done func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.done)
	return c.Conn.Close()
}

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// DefaultVIPCIDR is where MeshExternalService VIPs live.
var DefaultVIPCIDR = netip.MustParsePrefix("242.0.0.0/8")

// VIPRoute sends TCP connections to addresses in CIDR to Proxy (Envoy's
// transparent listener, which must listen on an IPv4 address).
type VIPRoute struct {
	CIDR  netip.Prefix
	Proxy netip.AddrPort
}

func (r VIPRoute) String() string { return r.CIDR.String() + "=" + r.Proxy.String() }

// ParseVIPRoute parses "242.0.0.0/8=127.0.0.1:15001".
func ParseVIPRoute(s string) (VIPRoute, error) {
	cidr, proxy, ok := strings.Cut(s, "=")
	if !ok {
		return VIPRoute{}, fmt.Errorf("VIP route %q: want CIDR=IP:PORT, e.g. 242.0.0.0/8=127.0.0.1:15001", s)
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return VIPRoute{}, fmt.Errorf("VIP route %q: %w", s, err)
	}
	ap, err := netip.ParseAddrPort(proxy)
	if err != nil {
		return VIPRoute{}, fmt.Errorf("VIP route %q: proxy: %w", s, err)
	}
	r := VIPRoute{CIDR: p, Proxy: ap}
	return r, r.validate()
}

func (r VIPRoute) validate() error {
	if !r.CIDR.IsValid() || !r.CIDR.Addr().Is4() {
		return fmt.Errorf("VIP CIDR %s: only IPv4 ranges are supported", r.CIDR)
	}
	if r.CIDR != r.CIDR.Masked() {
		return fmt.Errorf("VIP CIDR %s has host bits set (did you mean %s?)", r.CIDR, r.CIDR.Masked())
	}
	if !r.Proxy.Addr().Unmap().Is4() || r.Proxy.Port() == 0 {
		return fmt.Errorf("proxy target %s: want an IPv4 address and a non-zero port", r.Proxy)
	}
	if r.CIDR.Contains(r.Proxy.Addr().Unmap()) {
		return fmt.Errorf("proxy target %s lies inside its own VIP range %s", r.Proxy, r.CIDR)
	}
	return nil
}

// Config is what the programs read at run time; it can change while attached.
type Config struct {
	// VIPs maps VIP ranges to proxy listeners; empty means no TCP redirect.
	VIPs []VIPRoute
	// DNS is where UDP/53 goes; the zero value leaves DNS alone.
	DNS netip.AddrPort
	// BypassUID exempts sockets of processes running as this uid.
	BypassUID *uint32
	// BypassMark exempts sockets carrying this SO_MARK.
	BypassMark *uint32
	// CgroupProxies gives a workload cgroup (by CgroupID, exact match) its
	// own proxy listener for every VIP range, so one attachment on a
	// parent cgroup can serve many workloads with their own Envoys.
	CgroupProxies map[uint64]netip.AddrPort
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	seen := map[netip.Prefix]bool{}
	for _, r := range c.VIPs {
		if err := r.validate(); err != nil {
			return err
		}
		if seen[r.CIDR] {
			return fmt.Errorf("VIP CIDR %s listed twice", r.CIDR)
		}
		seen[r.CIDR] = true
	}
	if c.DNS.IsValid() && (!c.DNS.Addr().Unmap().Is4() || c.DNS.Port() == 0) {
		return fmt.Errorf("DNS target %s: want an IPv4 address and a non-zero port", c.DNS)
	}
	for id, p := range c.CgroupProxies {
		if id == 0 || !p.Addr().Unmap().Is4() || p.Port() == 0 {
			return fmt.Errorf("cgroup %d proxy %s: want a cgroup id and an IPv4 address with a non-zero port", id, p)
		}
	}
	if len(c.CgroupProxies) > maxCgroupProxies {
		return fmt.Errorf("%d per-cgroup proxies: at most %d are supported", len(c.CgroupProxies), maxCgroupProxies)
	}
	if len(c.VIPs) > maxVIPRoutes {
		return fmt.Errorf("%d VIP ranges: at most %d are supported", len(c.VIPs), maxVIPRoutes)
	}
	return nil
}

// max_entries in redirect.c
const (
	maxVIPRoutes     = 256  // vip_cidrs
	maxCgroupProxies = 4096 // cgroup_proxy
)

// Flags in config.flags (redirect.c CFG_*).
const (
	cfgDNSEnabled = 1 << 0
	cfgBypassMark = 1 << 1
	cfgBypassUID  = 1 << 2
)

// Network-order values as the programs compare them: the uint32/uint16 whose
// in-memory bytes are the address/port in network order.
func ip4Value(a netip.Addr) uint32 {
	b := a.Unmap().As4()
	return binary.NativeEndian.Uint32(b[:])
}

func portValue(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func ip4FromValue(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func portFromValue(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

func encodeConfig(c Config) redirectConfig {
	var rc redirectConfig
	if c.DNS.IsValid() {
		rc.Flags |= cfgDNSEnabled
		rc.DnsIp4 = ip4Value(c.DNS.Addr())
		rc.DnsPort = portValue(c.DNS.Port())
	}
	if c.BypassMark != nil {
		rc.Flags |= cfgBypassMark
		rc.BypassMark = *c.BypassMark
	}
	if c.BypassUID != nil {
		rc.Flags |= cfgBypassUID
		rc.BypassUid = *c.BypassUID
	}
	return rc
}

func decodeConfig(rc redirectConfig, vips []VIPRoute) Config {
	c := Config{VIPs: vips}
	if rc.Flags&cfgDNSEnabled != 0 {
		c.DNS = netip.AddrPortFrom(ip4FromValue(rc.DnsIp4), portFromValue(rc.DnsPort))
	}
	if rc.Flags&cfgBypassMark != 0 {
		m := rc.BypassMark
		c.BypassMark = &m
	}
	if rc.Flags&cfgBypassUID != 0 {
		u := rc.BypassUid
		c.BypassUID = &u
	}
	return c
}

func proxyTarget(ap netip.AddrPort) redirectProxyTarget {
	return redirectProxyTarget{Ip4: ip4Value(ap.Addr()), Port: portValue(ap.Port())}
}

func targetAddrPort(v redirectProxyTarget) netip.AddrPort {
	return netip.AddrPortFrom(ip4FromValue(v.Ip4), portFromValue(v.Port))
}

func vipKey(p netip.Prefix) redirectVipKey {
	return redirectVipKey{Prefixlen: uint32(p.Bits()), Addr: ip4Value(p.Addr())}
}

func vipFromEntry(k redirectVipKey, v redirectProxyTarget) VIPRoute {
	return VIPRoute{
		CIDR:  netip.PrefixFrom(ip4FromValue(k.Addr), int(k.Prefixlen)),
		Proxy: targetAddrPort(v),
	}
}

func sortVIPs(v []VIPRoute) {
	sort.Slice(v, func(i, j int) bool {
		if c := v[i].CIDR.Addr().Compare(v[j].CIDR.Addr()); c != 0 {
			return c < 0
		}
		return v[i].CIDR.Bits() < v[j].CIDR.Bits()
	})
}

// Stats are the programs' counters, summed over CPUs.
type Stats struct {
	TCPRedirect      uint64 // connect4 rewrites
	TCPV4Mapped      uint64 // connect6 rewrites of ::ffff:VIP
	SockopsTuple     uint64 // client 4-tuples published
	PassiveMoved     uint64 // original destinations moved to accepted sockets
	GetsockoptHit    uint64 // SO_ORIGINAL_DST answered
	DNSRedirect      uint64 // UDP/53 sends redirected
	DNSReplyRestored uint64 // reply sources restored
	Bypass           uint64 // sockets skipped by uid/mark
	MapErrors        uint64 // failed map updates
}

func (s Stats) String() string {
	return "tcp_redirect=" + strconv.FormatUint(s.TCPRedirect, 10) +
		" tcp_v4mapped=" + strconv.FormatUint(s.TCPV4Mapped, 10) +
		" sockops_tuple=" + strconv.FormatUint(s.SockopsTuple, 10) +
		" passive_moved=" + strconv.FormatUint(s.PassiveMoved, 10) +
		" getsockopt_hit=" + strconv.FormatUint(s.GetsockoptHit, 10) +
		" dns_redirect=" + strconv.FormatUint(s.DNSRedirect, 10) +
		" dns_reply_restored=" + strconv.FormatUint(s.DNSReplyRestored, 10) +
		" bypass=" + strconv.FormatUint(s.Bypass, 10) +
		" map_errors=" + strconv.FormatUint(s.MapErrors, 10)
}

// statsFromSlots maps stat_index slots (redirect.c) onto Stats.
func statsFromSlots(v []uint64) (Stats, error) {
	if len(v) < 9 {
		return Stats{}, errors.New("stats map has too few slots")
	}
	return Stats{
		TCPRedirect: v[0], TCPV4Mapped: v[1], SockopsTuple: v[2], PassiveMoved: v[3],
		GetsockoptHit: v[4], DNSRedirect: v[5], DNSReplyRestored: v[6], Bypass: v[7], MapErrors: v[8],
	}, nil
}

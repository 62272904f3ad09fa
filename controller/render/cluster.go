package render

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	commondnsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/common/dns/v3"
	dnsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dns/v3"
	caresv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/network/dns_resolver/cares/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
)

// connectTimeout is Kuma's for MES clusters.
const connectTimeout = 5 * time.Second

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// serviceCluster renders the upstream cluster of one MeshExternalService and
// the SDS secrets its TLS context references.
func (r *renderer) serviceCluster(s *model.Service) (*clusterv3.Cluster, []*tlsv3.Secret, error) {
	if len(s.Endpoints) == 0 {
		return nil, nil, fmt.Errorf("no endpoints")
	}
	c := &clusterv3.Cluster{
		Name:           s.ClusterName(),
		ConnectTimeout: durationpb.New(connectTimeout),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
	}
	if len(s.Endpoints) > 1 {
		// F11: failover to another endpoint (another priority, or the
		// others of the same one) needs a health signal; Kuma has none by
		// default. With one endpoint there is nowhere else to go, so, as
		// Kuma, none (a MeshCircuitBreaker's outlierDetection still adds it).
		c.OutlierDetection = defaultOutlierDetection()
	}
	var hasDNS, hasUnix bool
	for _, ep := range s.Endpoints {
		switch {
		case ep.Unix:
			hasUnix = true
		case !ep.IsIP && !hostIsIP(ep.Address):
			hasDNS = true
		}
	}
	if hasDNS && hasUnix {
		// A STRICT_DNS cluster resolves every endpoint; a pipe has nothing to resolve.
		return nil, nil, fmt.Errorf("unix socket endpoints cannot be mixed with DNS-name endpoints in one service")
	}
	if hasDNS {
		// V4_ONLY (Kuma's choice) would never "resolve" an IPv6 literal that
		// shares the cluster with a DNS name; V4_PREFERRED still prefers IPv4.
		family := commondnsv3.DnsLookupFamily_V4_ONLY
		for _, ep := range s.Endpoints {
			if a, err := netip.ParseAddr(ep.Address); err == nil && !ep.Unix && a.Is6() && !a.Is4In6() {
				family = commondnsv3.DnsLookupFamily_V4_PREFERRED
			}
		}
		dc, err := r.shared.get("dns-cluster-type/"+family.String(), func() (any, error) { return r.dnsClusterType(family) })
		if err != nil {
			return nil, nil, err
		}
		c.ClusterDiscoveryType = dc.(*clusterv3.Cluster_ClusterType)
	} else {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	}
	la, err := loadAssignment(c.Name, s.Endpoints)
	if err != nil {
		return nil, nil, err
	}
	c.LoadAssignment = la

	if opts := protocolOptions(s.Protocol); opts != nil {
		// The same for every service of a protocol: packed once, shared.
		a, err := r.shared.get("protocol-options/"+s.Protocol, func() (any, error) { return pack(opts) })
		if err != nil {
			return nil, nil, err
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: a.(*anypb.Any)}
	}

	var secrets []*tlsv3.Secret
	if s.TLS != nil {
		ts, sec, err := r.upstreamTLS(s)
		if err != nil {
			return nil, nil, err
		}
		c.TransportSocket = ts
		secrets = sec
	}
	if err := validate(c); err != nil {
		return nil, nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	return c, secrets, nil
}

// defaultOutlierDetection ejects an endpoint after 5 consecutive failures
// (connect failures count, as local-origin errors are not split out), so a
// dead priority-0 endpoint fails over to the next priority. 100% may be
// ejected: failover, not panic routing, is what a fully dead level needs.
func defaultOutlierDetection() *clusterv3.OutlierDetection {
	return &clusterv3.OutlierDetection{
		Consecutive_5Xx:    wrapperspb.UInt32(5),
		Interval:           durationpb.New(10 * time.Second),
		BaseEjectionTime:   durationpb.New(30 * time.Second),
		MaxEjectionPercent: wrapperspb.UInt32(100),
	}
}

// loadAssignment groups endpoints into one locality per priority. Envoy wants
// dense priorities (0..N), so user priorities are ranked; the locality's
// sub_zone keeps the user's number, as Kuma's does.
func loadAssignment(cluster string, eps []model.Endpoint) (*endpointv3.ClusterLoadAssignment, error) {
	byPrio := map[uint32][]*endpointv3.LbEndpoint{}
	for i, ep := range eps {
		addr, err := endpointAddress(ep)
		if err != nil {
			return nil, fmt.Errorf("endpoints[%d]: %w", i, err)
		}
		e := &endpointv3.Endpoint{Address: addr}
		if !ep.Unix && !ep.IsIP && !hostIsIP(ep.Address) {
			// The host name drives auto_host_sni (F5) and auto_host_rewrite.
			e.Hostname = ep.Address
		}
		byPrio[ep.Priority] = append(byPrio[ep.Priority], &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: e},
		})
	}
	prios := make([]uint32, 0, len(byPrio))
	for p := range byPrio {
		prios = append(prios, p)
	}
	sort.Slice(prios, func(i, j int) bool { return prios[i] < prios[j] })
	la := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	for rank, p := range prios {
		la.Endpoints = append(la.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:    &corev3.Locality{SubZone: "priority-" + strconv.FormatUint(uint64(p), 10)},
			Priority:    uint32(rank),
			LbEndpoints: byPrio[p],
		})
	}
	return la, nil
}

func endpointAddress(ep model.Endpoint) (*corev3.Address, error) {
	if ep.Unix {
		p := unixPath(ep.Address)
		if p == "" {
			return nil, fmt.Errorf("empty unix socket path")
		}
		// A leading "@" is Linux's abstract namespace; Envoy reads it the same way.
		return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: p}}}, nil
	}
	if ep.Port == 0 || ep.Port > 65535 {
		return nil, fmt.Errorf("port %d out of range", ep.Port)
	}
	return socketAddress(ep.Address, ep.Port), nil
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// protocolOptions pins the upstream HTTP version: HTTP/1.1 for http, HTTP/2
// for http2 and grpc; none for tcp.
func protocolOptions(protocol string) *upstreamhttpv3.HttpProtocolOptions {
	explicit := &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{}
	switch protocol {
	case resource.ProtocolHTTP:
		explicit.ProtocolConfig = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{
			HttpProtocolOptions: &corev3.Http1ProtocolOptions{},
		}
	case resource.ProtocolHTTP2, resource.ProtocolGRPC:
		explicit.ProtocolConfig = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
		}
	default:
		return nil
	}
	return &upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: explicit},
	}
}

// dnsClusterType makes the cluster strict-DNS: any DNS name makes the whole
// cluster resolve (IP endpoints resolve to themselves), every address is an
// endpoint, IPv4 only, refreshed at the record's TTL. Envoy 1.39 deprecates
// Cluster.type STRICT_DNS's resolver fields (respect_dns_ttl,
// dns_lookup_family) in favour of this extension, which has the same semantics.
func (r *renderer) dnsClusterType(family commondnsv3.DnsLookupFamily) (*clusterv3.Cluster_ClusterType, error) {
	dc := &dnsv3.DnsCluster{
		RespectDnsTtl:   true,
		DnsLookupFamily: family,
		// A TTL of 0 must not turn into a resolver hammer.
		DnsMinRefreshRate: durationpb.New(time.Second),
	}
	if r.dns.IsValid() {
		cfg, err := r.shared.get("dns-resolver", func() (any, error) { return caresResolver(r.dns) })
		if err != nil {
			return nil, err
		}
		dc.TypedDnsResolverConfig = cfg.(*corev3.TypedExtensionConfig)
	}
	a, err := pack(dc)
	if err != nil {
		return nil, err
	}
	return &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{
		Name: "envoy.clusters.dns", TypedConfig: a,
	}}, nil
}

func caresResolver(ap netip.AddrPort) (*corev3.TypedExtensionConfig, error) {
	cfg := &caresv3.CaresDnsResolverConfig{
		Resolvers: []*corev3.Address{socketAddress(ap.Addr().String(), uint32(ap.Port()))},
		DnsResolverOptions: &corev3.DnsResolverOptions{
			// Names are fully qualified; resolv.conf search suffixes only add lookups.
			NoDefaultSearchDomain: true,
		},
	}
	a, err := pack(cfg)
	if err != nil {
		return nil, err
	}
	return &corev3.TypedExtensionConfig{Name: "envoy.network.dns_resolver.cares", TypedConfig: a}, nil
}

// inboundCluster is the local service behind a Dataplane inbound.
func inboundCluster(name, addr string, port uint32) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(addr, port)}},
			}}}},
		},
	}
	if err := validate(c); err != nil {
		return nil, err
	}
	return c, nil
}

// UnknownDestinationCluster has no endpoints: the transparent listener's
// default chain proxies to it, so a connection to an address that is no
// service's VIP:port is closed at once and logged with flag UH.
const UnknownDestinationCluster = "meshext_unknown_destination"

// DeniedCluster has no endpoints either: a TCP service's chain proxies to it
// when the node's source is denied, so the connection is closed without
// reaching the service and the access log says cluster=meshext_denied.
const DeniedCluster = "meshext_denied"

func unknownDestinationCluster() (*clusterv3.Cluster, error) {
	return emptyCluster(UnknownDestinationCluster)
}

func emptyCluster(name string) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: name},
	}
	if err := validate(c); err != nil {
		return nil, err
	}
	return c, nil
}

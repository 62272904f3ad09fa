package render

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshext/meshext/controller/xds"
)

// How Envoy gets its dynamic config.
const (
	XDSFile = "file" // cds.json / lds.json in a watched directory
	XDSADS  = "ads"  // an ADS gRPC stream to meshext run
)

// XDSClusterName is the bootstrap cluster of the ADS server.
const XDSClusterName = "meshext_xds"

// DefaultAdminPort is Envoy's conventional admin port.
const DefaultAdminPort = 9901

// BootstrapOptions describe one Envoy.
type BootstrapOptions struct {
	NodeID       string // default "default"
	NodeCluster  string // node.cluster, default "meshext"
	AdminAddress string // default 127.0.0.1
	AdminPort    uint32 // default 9901
	// XDS is XDSFile or XDSADS (ignored by StaticBootstrap).
	XDS string
	// XDSDir is the absolute directory holding cds.json and lds.json (XDSFile).
	XDSDir string
	// FileFormat is the drop's encoding (XDSFile; "" = JSON, xds.FormatProto
	// reads cds.pb and lds.pb).
	FileFormat xds.Format
	// ADSAddress is the ADS server (XDSADS): unix:PATH for meshext run's
	// unix socket (an Envoy pipe address), or HOST:PORT.
	ADSAddress string
	// ADSTLS is how Envoy authenticates to a HOST:PORT ADS address (mTLS,
	// meshext run's default for TCP). A TCP address needs it or ADSInsecure.
	ADSTLS *ADSTLS
	// ADSInsecure: plain TCP without authentication (meshext run --ads-insecure).
	ADSInsecure bool
	// Delta selects incremental (delta) ADS instead of state-of-the-world.
	Delta bool
	// UpstreamDNS ("IP:PORT") becomes Envoy's default DNS resolver; "" keeps resolv.conf.
	UpstreamDNS string
}

// ADSTLS are the files of an Envoy's mTLS connection to the ADS server.
type ADSTLS struct {
	// CertFile and KeyFile are the node's xDS client certificate and key.
	CertFile, KeyFile string
	// CAFile is the xDS CA, which the server certificate must chain to.
	CAFile string
	// ServerName is the DNS name or IP address the server certificate must
	// carry (also the SNI for a name); "" = the host of ADSAddress.
	ServerName string
}

func (o *BootstrapOptions) base() (*bootstrapv3.Bootstrap, error) {
	id := o.NodeID
	if id == "" {
		id = DefaultNodeID
	}
	cl := o.NodeCluster
	if cl == "" {
		cl = "meshext"
	}
	addr := o.AdminAddress
	if addr == "" {
		addr = "127.0.0.1"
	}
	if _, err := netip.ParseAddr(addr); err != nil {
		return nil, fmt.Errorf("admin address %q is not an IP", addr)
	}
	port := o.AdminPort
	if port == 0 {
		port = DefaultAdminPort
	}
	if port > 65535 {
		return nil, fmt.Errorf("admin port %d out of range", port)
	}
	b := &bootstrapv3.Bootstrap{
		Node:  &corev3.Node{Id: id, Cluster: cl},
		Admin: &bootstrapv3.Admin{Address: socketAddress(addr, port)},
	}
	if o.UpstreamDNS != "" {
		ap, err := netip.ParseAddrPort(o.UpstreamDNS)
		if err != nil {
			return nil, fmt.Errorf("upstream DNS %q: want IP:PORT: %v", o.UpstreamDNS, err)
		}
		cfg, err := caresResolver(ap)
		if err != nil {
			return nil, err
		}
		b.TypedDnsResolverConfig = cfg
	}
	return b, nil
}

// Bootstrap is the bootstrap of an Envoy fed by meshext run, through files or ADS.
//
// File mode: CDS and LDS each read <XDSDir>/{cds,lds}.json and watch XDSDir, so
// an atomic rename of either file reloads it. Secrets are referenced by the
// clusters themselves (render.Options.SecretsVia).
func Bootstrap(o BootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	b, err := o.base()
	if err != nil {
		return nil, err
	}
	switch o.XDS {
	case XDSFile:
		if o.XDSDir == "" || !filepath.IsAbs(o.XDSDir) {
			return nil, fmt.Errorf("xds file needs an absolute xds directory, got %q", o.XDSDir)
		}
		watch := &corev3.WatchedDirectory{Path: o.XDSDir}
		src := func(file string) *corev3.ConfigSource {
			return &corev3.ConfigSource{
				ResourceApiVersion: corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
					Path: filepath.Join(o.XDSDir, file), WatchedDirectory: watch,
				}},
			}
		}
		if _, err := xds.ParseFormat(string(o.FileFormat)); err != nil {
			return nil, err
		}
		ext := o.FileFormat.Ext()
		b.DynamicResources = &bootstrapv3.Bootstrap_DynamicResources{CdsConfig: src("cds" + ext), LdsConfig: src("lds" + ext)}
	case XDSADS:
		c, err := adsCluster(o)
		if err != nil {
			return nil, err
		}
		apiType := corev3.ApiConfigSource_GRPC
		if o.Delta {
			apiType = corev3.ApiConfigSource_DELTA_GRPC
		}
		ads := &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}
		b.DynamicResources = &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             apiType,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName},
				}}},
				SetNodeOnFirstMessageOnly: true,
			},
			CdsConfig: ads,
			LdsConfig: ads,
		}
		b.StaticResources = &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{c}}
	default:
		return nil, fmt.Errorf("xds %q: want %q or %q", o.XDS, XDSFile, XDSADS)
	}
	if err := validate(b); err != nil {
		return nil, err
	}
	return b, nil
}

// adsCluster reaches the ADS server over HTTP/2 (gRPC): through a unix
// socket (pipe), over mTLS, or, when the operator said so, plain TCP. A
// host name is resolved with LOGICAL_DNS.
func adsCluster(o BootstrapOptions) (*clusterv3.Cluster, error) {
	var addr *corev3.Address
	var host string
	typ := clusterv3.Cluster_STATIC
	if path, ok := xds.UnixPath(o.ADSAddress); ok {
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("ADS address %q: want unix:/absolute/path", o.ADSAddress)
		}
		if o.ADSTLS != nil || o.ADSInsecure {
			return nil, fmt.Errorf("ADS address %q is a unix socket: mTLS and insecure are for TCP", o.ADSAddress)
		}
		addr = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: path}}}
	} else {
		h, p, err := net.SplitHostPort(o.ADSAddress)
		if err != nil {
			return nil, fmt.Errorf("ADS address %q: want unix:PATH or HOST:PORT: %v", o.ADSAddress, err)
		}
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil || port == 0 || h == "" {
			return nil, fmt.Errorf("ADS address %q: want HOST:PORT with a port in 1..65535", o.ADSAddress)
		}
		switch {
		case o.ADSTLS != nil && o.ADSInsecure:
			return nil, errors.New("ADS over TCP: choose mTLS or insecure, not both")
		case o.ADSTLS == nil && !o.ADSInsecure:
			return nil, fmt.Errorf("ADS address %q is TCP: Envoy needs its xDS client certificate (mTLS), or insecure for a server run with --ads-insecure", o.ADSAddress)
		}
		host = h
		addr = socketAddress(h, uint32(port))
		if !hostIsIP(h) {
			typ = clusterv3.Cluster_LOGICAL_DNS
		}
	}
	h2, err := pack(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
					// Notice a dead control plane within a minute, not at the next TCP timeout.
					ConnectionKeepalive: &corev3.KeepaliveSettings{
						Interval: durationpb.New(30 * time.Second),
						Timeout:  durationpb.New(10 * time.Second),
					},
				},
			},
		}},
	})
	if err != nil {
		return nil, err
	}
	c := &clusterv3.Cluster{
		Name:                          XDSClusterName,
		ConnectTimeout:                durationpb.New(connectTimeout),
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: typ},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{httpProtocolOptionsKey: h2},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: XDSClusterName,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr}},
			}}}},
		},
	}
	if o.ADSTLS != nil {
		if c.TransportSocket, err = adsTLSSocket(o.ADSTLS, host); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// adsTLSSocket: the node's client certificate, the xDS CA as the only trust
// anchor, and the server certificate checked for the name Envoy dials.
func adsTLSSocket(t *ADSTLS, host string) (*corev3.TransportSocket, error) {
	for name, f := range map[string]string{"client certificate": t.CertFile, "client key": t.KeyFile, "CA": t.CAFile} {
		if f == "" || !filepath.IsAbs(f) {
			return nil, fmt.Errorf("ADS mTLS: the %s file must be an absolute path, got %q", name, f)
		}
	}
	name := t.ServerName
	if name == "" {
		name = host
	}
	san := &tlsv3.SubjectAltNameMatcher{
		SanType: tlsv3.SubjectAltNameMatcher_DNS,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: name}},
	}
	sni := name
	if hostIsIP(name) {
		san.SanType, sni = tlsv3.SubjectAltNameMatcher_IP_ADDRESS, ""
	}
	file := func(p string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p}}
	}
	a, err := pack(&tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:   []string{"h2"},
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: file(t.CertFile), PrivateKey: file(t.KeyFile)}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa:                 file(t.CAFile),
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{san},
			}},
		},
	})
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

// StaticBootstrap puts a node's whole config inline: clusters, listeners and
// secrets as static_resources, for `meshext render` and `envoy --mode validate`.
// Cluster SDS references are rewritten to name static secrets; n is not modified.
// The node's admin port, when set, overrides o.AdminPort.
func StaticBootstrap(n *Node, o BootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	if o.NodeID == "" {
		o.NodeID = n.ID
	}
	if n.AdminPort != 0 {
		o.AdminPort = n.AdminPort
	}
	b, err := o.base()
	if err != nil {
		return nil, err
	}
	// Static resources have no RDS: the route tables go back inline.
	ls, err := inlineRoutes(n.Listeners, n.Routes)
	if err != nil {
		return nil, err
	}
	sr := &bootstrapv3.Bootstrap_StaticResources{
		Listeners: append([]*listenerv3.Listener(nil), ls...),
		Secrets:   append([]*tlsv3.Secret(nil), n.Secrets...),
	}
	for _, c := range n.Clusters {
		sc, err := staticSecretRefs(c)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
		}
		sr.Clusters = append(sr.Clusters, sc)
	}
	b.StaticResources = sr
	if err := validate(b); err != nil {
		return nil, err
	}
	return b, nil
}

// staticSecretRefs returns c, or a copy whose TLS context names its SDS
// secrets without a config source, which Envoy resolves against
// static_resources.secrets.
func staticSecretRefs(c *clusterv3.Cluster) (*clusterv3.Cluster, error) {
	ts := c.GetTransportSocket().GetTypedConfig()
	if ts == nil {
		return c, nil
	}
	up := &tlsv3.UpstreamTlsContext{}
	if err := ts.UnmarshalTo(up); err != nil {
		return nil, err
	}
	common := up.GetCommonTlsContext()
	for _, s := range common.GetTlsCertificateSdsSecretConfigs() {
		s.SdsConfig = nil
	}
	if cv := common.GetCombinedValidationContext(); cv != nil && cv.ValidationContextSdsSecretConfig != nil {
		cv.ValidationContextSdsSecretConfig.SdsConfig = nil
	}
	a, err := pack(up)
	if err != nil {
		return nil, err
	}
	cc := proto.Clone(c).(*clusterv3.Cluster)
	cc.TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: a}
	return cc, nil
}

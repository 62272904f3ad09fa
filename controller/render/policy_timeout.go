package render

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshext/meshext/controller/resource"
)

// Kuma's MeshTimeout defaults for a field a policy leaves out
// (pkg/plugins/policies/core/defaults, v2.14).
const (
	defaultConnectTimeout    = 5 * time.Second
	defaultIdleTimeout       = time.Hour
	defaultRequestTimeout    = 15 * time.Second
	defaultStreamIdleTimeout = 30 * time.Minute
)

// configureClusterTimeouts is MeshTimeout's cluster side (Kuma's
// ClusterConfigurer): the connect timeout, and for HTTP services the
// upstream connections' idle timeout and the stream and connection
// lifetimes. Kuma leaves gRPC clusters out of the HTTP part; meshext's gRPC
// upstreams are HTTP/2 connections like http2's and get it too.
// packs, when not nil, keeps the repacked protocol options by base and
// timeouts, so clusters sharing their base options share the result too.
func configureClusterTimeouts(conf *resource.MeshTimeoutConf, protocol string, c *clusterv3.Cluster, packs *keyed[timeoutKey, *anypb.Any]) error {
	c.ConnectTimeout = durationpb.New(durationOr(conf.ConnectionTimeout, defaultConnectTimeout))
	a := c.TypedExtensionProtocolOptions[httpProtocolOptionsKey]
	if a == nil {
		return nil // tcp
	}
	var http resource.MeshTimeoutHTTP
	if conf.HTTP != nil {
		http = *conf.HTTP
	}
	key := timeoutKey{base: a, idle: durationOr(conf.IdleTimeout, defaultIdleTimeout),
		stream: durationOr(http.MaxStreamDuration, 0), conn: durationOr(http.MaxConnectionDuration, 0)}
	repack := func() (*anypb.Any, error) {
		opts := &upstreamhttpv3.HttpProtocolOptions{}
		if err := a.UnmarshalTo(opts); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
		}
		opts.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{
			IdleTimeout:           durationpb.New(key.idle),
			MaxStreamDuration:     durationpb.New(key.stream),
			MaxConnectionDuration: durationpb.New(key.conn),
		}
		return pack(opts)
	}
	var packed *anypb.Any
	var err error
	if packs != nil {
		packed, err = packs.get(key, repack)
	} else {
		packed, err = repack()
	}
	if err != nil {
		return err
	}
	// The map may be shared with the base cluster: replace it, not an entry.
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: packed}
	return nil
}

// timeoutKey is what configureClusterTimeouts makes of a cluster's
// protocol options (base, read only) and a MeshTimeout.
type timeoutKey struct {
	base               *anypb.Any
	idle, stream, conn time.Duration
}

// tcpProxyTimeouts is MeshTimeout on a tcp_proxy: idleTimeout (default 1 h).
func tcpProxyTimeouts(conf *resource.MeshTimeoutConf, tp *tcpproxyv3.TcpProxy) {
	tp.IdleTimeout = durationpb.New(durationOr(conf.IdleTimeout, defaultIdleTimeout))
}

// hcmTimeouts is MeshTimeout on an HTTP connection manager: the request
// headers timeout (default none), and no downstream idle timeout (Kuma
// times idle connections out upstream, on the cluster).
func hcmTimeouts(conf *resource.MeshTimeoutConf, hcm *hcmv3.HttpConnectionManager) {
	var headers *resource.Duration
	if conf.HTTP != nil {
		headers = conf.HTTP.RequestHeadersTimeout
	}
	hcm.RequestHeadersTimeout = durationpb.New(durationOr(headers, 0))
	hcm.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(0)}
}

// routeTimeouts is MeshTimeout on a route (Kuma's ConfigureRouteAction):
// requestTimeout (default 15 s) and streamIdleTimeout (default 30 min).
func routeTimeouts(conf *resource.MeshTimeoutConf, a *routev3.RouteAction) {
	var request, streamIdle *resource.Duration
	if conf.HTTP != nil {
		request, streamIdle = conf.HTTP.RequestTimeout, conf.HTTP.StreamIdleTimeout
	}
	a.Timeout = durationpb.New(durationOr(request, defaultRequestTimeout))
	a.IdleTimeout = durationpb.New(durationOr(streamIdle, defaultStreamIdleTimeout))
}

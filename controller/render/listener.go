package render

import (
	"fmt"
	"net"
	"sort"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	origdstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
)

// TransparentListenerName is the listener the eBPF redirect feeds.
const TransparentListenerName = "outbound:transparent"

// tcpProxy is a plain tcp_proxy: the listeners that carry no
// MeshExternalService traffic (unknown destinations, inbounds). Kuma's
// default is no access log; MeshAccessLog adds one to service traffic.
func (r *renderer) tcpProxy(statPrefix, cluster string) (*listenerv3.Filter, error) {
	return networkFilter("envoy.filters.network.tcp_proxy", &tcpproxyv3.TcpProxy{
		StatPrefix:       statPrefix,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
	})
}

func networkFilter(name string, cfg proto.Message) (*listenerv3.Filter, error) {
	a, err := pack(cfg)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}, nil
}

// serviceFilters is the network filter chain for traffic from node n to s:
// authorization (authzFilters), then tcp_proxy or an HTTP connection manager.
// closed reports a denied tcp service (its chain goes to DeniedCluster).
func (r *renderer) serviceFilters(n *Node, s *model.Service) (_ []*listenerv3.Filter, closed bool, err error) {
	h := r.hopOf(n, s)
	var netAuthz []*listenerv3.Filter
	var httpAuthz []*hcmv3.HttpFilter
	var static staticDecision
	switch {
	case h.viaEgress:
		// The ZoneEgress decides, from the caller's certificate: a
		// workload's own Envoy is not trusted to (see egress.go).
	case h.atEgress:
		netAuthz, httpAuthz, err = r.egressAuthz(n, s)
	default:
		netAuthz, httpAuthz, static, err = r.authzFilters(n, s)
		closed = static.denied() && !isHTTP(s)
	}
	if err != nil {
		return nil, false, fmt.Errorf("authorization: %w", err)
	}
	cluster := s.ClusterName()
	var last *listenerv3.Filter
	switch s.Protocol {
	case resource.ProtocolTCP, "":
		if len(httpAuthz) > 0 {
			return nil, false, fmt.Errorf("authorization: HTTP filters for a tcp service")
		}
		upstream := cluster
		if closed {
			// Denied at render time: never connect upstream, close the
			// connection (a server-first protocol must not talk first).
			// A listener change, so it holds for new connections: Envoy
			// drains the old chain's open ones.
			upstream = DeniedCluster
		}
		var denied bool
		last, denied, err = r.serviceTCPProxy(n, s, upstream, closed, h)
		closed = closed || denied
	case resource.ProtocolHTTP, resource.ProtocolHTTP2, resource.ProtocolGRPC:
		last, err = r.httpConnectionManager(n, s, httpAuthz, static, h)
	default:
		return nil, false, fmt.Errorf("unknown protocol %q", s.Protocol)
	}
	if err != nil {
		return nil, false, err
	}
	return append(append([]*listenerv3.Filter{}, netAuthz...), last), closed, nil
}

// httpConnectionManager serves s's HTTP traffic from node n on hop h: its
// authorization filter, then the router over s's route table (a single
// route to s's cluster unless a MeshHTTPRoute or MeshTCPRoute says
// otherwise; see policy_httproute.go), with the node's MeshTimeout and
// MeshAccessLog for s. At an egress the table is one route to s's upstream
// cluster (egressRoutes): routes, retries and request timeouts are the
// workload's.
func (r *renderer) httpConnectionManager(n *Node, s *model.Service, authz []*hcmv3.HttpFilter, static staticDecision, h hop) (*listenerv3.Filter, error) {
	cluster := s.ClusterName()
	eff := r.policiesFor(n, s)
	var routes []*routev3.Route
	var err error
	switch {
	case static.denied():
		routes = []*routev3.Route{staticDenyRoute(static)}
	case h.atEgress:
		routes, err = r.egressRoutes(s, eff)
	default:
		routes, err = r.routeTable(n, s, eff, h)
	}
	if err != nil {
		return nil, err
	}
	router, err := r.shared.get("router", func() (any, error) { return pack(&routerv3.Router{}) })
	if err != nil {
		return nil, err
	}
	filters := append(append([]*hcmv3.HttpFilter{}, authz...), &hcmv3.HttpFilter{
		Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router.(*anypb.Any)},
	})
	hcm := &hcmv3.HttpConnectionManager{
		CodecType:   hcmv3.HttpConnectionManager_AUTO,
		StatPrefix:  cluster,
		HttpFilters: filters,
	}
	err = r.setRoutes(n, hcm, &routev3.RouteConfiguration{
		Name:             cluster,
		ValidateClusters: noClusterValidation(),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    cluster,
			Domains: []string{"*"},
			Routes:  routes,
		}},
	}, h)
	if err != nil {
		return nil, err
	}
	if t := confOf[resource.MeshTimeoutConf](eff, resource.KindMeshTimeout); t != nil && !h.atEgress {
		hcmTimeouts(t, hcm)
	}
	if hcm.AccessLog, err = r.httpAccessLogs(n, s, eff); err != nil {
		return nil, err
	}
	hcm.GenerateRequestId = generateRequestID(hcm.AccessLog)
	return networkFilter("envoy.filters.network.http_connection_manager", hcm)
}

// noClusterValidation turns off Envoy's check that every cluster an
// inline route config names exists, which it makes when the listener
// arrives. Delivered as files, a new listener may arrive while a cluster of
// the same update is still warming, and Envoy would reject the whole
// listener update and keep the stale one (seen at an egress when a service
// was added); without the check the route answers 503 for that moment.
// Render puts every cluster a route names on the same node (as Kuma, which
// sets it false too).
func noClusterValidation() *wrapperspb.BoolValue { return wrapperspb.Bool(false) }

// outbound is a Dataplane outbound (backendRef MeshExternalService): a plain
// listener on outbound.address (default 127.0.0.1):port.
func (r *renderer) outbound(dp *resource.Dataplane, ob resource.Outbound, s *model.Service, filters []*listenerv3.Filter) (*listenerv3.Listener, error) {
	addr := ob.Address
	if addr == "" {
		addr = "127.0.0.1"
	}
	if ob.Port <= 0 || ob.Port > 65535 {
		return nil, fmt.Errorf("port %d out of range", ob.Port)
	}
	l := &listenerv3.Listener{
		Name:             "outbound:" + net.JoinHostPort(addr, strconv.FormatInt(ob.Port, 10)),
		Address:          socketAddress(addr, uint32(ob.Port)),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		StatPrefix:       "outbound_" + s.ClusterName(),
		FilterChains:     []*listenerv3.FilterChain{{Name: s.ClusterName(), Filters: filters}},
	}
	if err := validate(l); err != nil {
		return nil, err
	}
	return l, nil
}

// transparent is the listener the eBPF redirect delivers to. original_dst
// restores the socket's original destination (SO_ORIGINAL_DST), and one filter
// chain per VIP:match.port picks the service. Anything else meets the default
// chain, which closes the connection (a cluster without endpoints) rather than guess.
func (r *renderer) transparent(port uint32, services []*rendered, filters map[*model.Service][]*listenerv3.Filter) (*listenerv3.Listener, []string, error) {
	od, err := pack(&origdstv3.OriginalDst{})
	if err != nil {
		return nil, nil, err
	}
	deny, err := r.tcpProxy("unknown_destination", UnknownDestinationCluster)
	if err != nil {
		return nil, nil, err
	}
	l := &listenerv3.Listener{
		Name:             TransparentListenerName,
		Address:          socketAddress("127.0.0.1", port),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{{
			Name:       "envoy.filters.listener.original_dst",
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: od},
		}},
		DefaultFilterChain: &listenerv3.FilterChain{Name: "unknown_destination", Filters: []*listenerv3.Filter{deny}},
	}
	var warnings []string
	var withVIP []*model.Service
	for _, rs := range services {
		if !rs.svc.VIP.IsValid() {
			warnings = append(warnings, fmt.Sprintf("%s/%s: no VIP, not reachable through the transparent listener", rs.svc.Mesh, rs.svc.Name))
			continue
		}
		withVIP = append(withVIP, rs.svc)
	}
	// match.port omitted (Port 0) matches every port on the VIP. Envoy looks up
	// the destination port first and does not fall back from a port's chains
	// to the port-less ones (filter_chain_manager_impl.cc), so a port-less
	// service also gets one chain per port that other services use.
	var usedPorts []uint32
	seenPort := map[uint32]bool{}
	for _, s := range withVIP {
		if s.Port != 0 && !seenPort[s.Port] {
			seenPort[s.Port] = true
			usedPorts = append(usedPorts, s.Port)
		}
	}
	sort.Slice(usedPorts, func(i, j int) bool { return usedPorts[i] < usedPorts[j] })
	seen := map[string]string{}
	chain := func(s *model.Service, port uint32, name string) {
		key := net.JoinHostPort(s.VIP.String(), "*")
		var dp *wrapperspb.UInt32Value
		if port != 0 {
			key = net.JoinHostPort(s.VIP.String(), strconv.FormatUint(uint64(port), 10))
			dp = wrapperspb.UInt32(port)
		}
		if other, dup := seen[key]; dup {
			warnings = append(warnings, fmt.Sprintf("%s/%s: %s is already %s's (skipped on the transparent listener)", s.Mesh, s.Name, key, other))
			return
		}
		seen[key] = s.Mesh + "/" + s.Name
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name: name,
			FilterChainMatch: &listenerv3.FilterChainMatch{
				PrefixRanges:    []*corev3.CidrRange{{AddressPrefix: s.VIP.String(), PrefixLen: wrapperspb.UInt32(uint32(s.VIP.BitLen()))}},
				DestinationPort: dp,
			},
			Filters: filters[s],
		})
	}
	for _, s := range withVIP {
		chain(s, s.Port, s.ClusterName())
		if s.Port == 0 {
			for _, p := range usedPorts {
				chain(s, p, s.ClusterName()+":"+strconv.FormatUint(uint64(p), 10))
			}
		}
	}
	if err := validate(l); err != nil {
		return nil, nil, err
	}
	return l, warnings, nil
}

// inbound is a plain pass-through listener for a Dataplane inbound: port on
// inbound.address (else networking.address) to serviceAddress:servicePort
// (defaults 127.0.0.1 and port, as in Kuma).
func (r *renderer) inbound(dp *resource.Dataplane, in resource.Inbound) (*listenerv3.Listener, *clusterv3.Cluster, error) {
	addr := in.Address
	if addr == "" {
		addr = dp.Networking.Address
	}
	if addr == "" {
		addr = "0.0.0.0"
	}
	svcAddr := in.ServiceAddress
	if svcAddr == "" {
		svcAddr = "127.0.0.1"
	}
	svcPort := in.ServicePort
	if svcPort == 0 {
		svcPort = in.Port
	}
	if in.Port <= 0 || in.Port > 65535 || svcPort <= 0 || svcPort > 65535 {
		return nil, nil, fmt.Errorf("port %d / servicePort %d out of range", in.Port, svcPort)
	}
	clusterName := "inbound:" + net.JoinHostPort(svcAddr, strconv.FormatInt(svcPort, 10))
	c, err := inboundCluster(clusterName, svcAddr, uint32(svcPort))
	if err != nil {
		return nil, nil, err
	}
	name := "inbound:" + net.JoinHostPort(addr, strconv.FormatInt(in.Port, 10))
	tp, err := r.tcpProxy(name, clusterName)
	if err != nil {
		return nil, nil, err
	}
	l := &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(addr, uint32(in.Port)),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains:     []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{tp}}},
	}
	if err := validate(l); err != nil {
		return nil, nil, err
	}
	return l, c, nil
}

package render

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
	"github.com/meshext/meshext/plugin/rbac"
)

// Kuma's egress path. In a mesh with mTLS (model.MeshMTLS) a workload's
// Envoy does not reach a MeshExternalService itself: the service's cluster
// on the workload's node has the zone's ZoneEgresses as endpoints and
// speaks mTLS to them with the workload's identity, sending the service's
// SNI (workloadCluster). The egress Envoy has one listener with a TLS
// inspector and one filter chain per service, chosen by that SNI, that
// requires a client certificate of the mesh CA (egressListener); there the
// caller is authorized by its verified SPIFFE ID (egressAuthz) and the
// request goes on through the cluster that originates TLS to the real
// endpoints, the one direct mode uses (serviceCluster). The workload's
// Envoy decides nothing: it runs on the workload's host and the workload
// could skip it. Its own TLS material for the service (client certificate,
// CA) lives on the egress only.

// ALPN a workload offers an egress (Kuma's "kuma").
const kumaALPN = "kuma"

// egressConnectAttempts: a connection that fails to reach one egress is
// tried on another (tcp_proxy), up to this many attempts in all.
const egressConnectAttempts = 3

// hop is where a service's filter chain sits on the egress path, and so
// which of Kuma's policies it carries (Kuma's split between a workload's
// outbound and its ZoneEgress):
//
//   - direct (neither): everything, as the workload's Envoy originates the
//     traffic itself.
//   - viaEgress: the route side (MeshHTTPRoute, MeshTCPRoute, MeshRetry
//     combined with the egress failover, MeshTimeout's request and stream
//     timeouts, MeshAccessLog); its cluster goes to the egresses and keeps
//     their failover settings; no authorization (the egress decides, also
//     for route backends).
//   - atEgress: the cluster side on the upstream cluster (MeshCircuitBreaker,
//     MeshHealthCheck, MeshLoadBalancingStrategy with its hash policies,
//     MeshTimeout's connection timeouts), MeshAccessLog, and authorization
//     by client certificate; one route to the upstream, no retries or
//     request timeouts of its own (the workload's apply).
type hop struct {
	viaEgress bool
	atEgress  bool
}

// hopOf says where n's chain for s sits.
func (r *renderer) hopOf(n *Node, s *model.Service) hop {
	switch {
	case n.ZoneEgress != nil:
		return hop{atEgress: true}
	case r.world.MTLS[s.Mesh] != nil:
		return hop{viaEgress: true}
	}
	return hop{}
}

// Egress failover on a workload's route: a request whose connection to an
// egress failed is retried on another egress; nothing was sent, so any
// request is safe to retry.
const (
	egressRetryOn               = "connect-failure,refused-stream"
	egressHostSelectionAttempts = 3
	previousHostsPredicateName  = "envoy.retry_host_predicates.previous_hosts"
	egressMinRetries            = egressConnectAttempts - 1
)

// egressRetryPolicy is the egress failover alone (no MeshRetry).
func egressRetryPolicy() *routev3.RetryPolicy {
	return withEgressFailover(nil)
}

// withEgressFailover adds the egress failover to a route's retry policy p
// (nil: none), so a MeshRetry never takes it away: connect-failure and
// refused-stream join retryOn, retries go to another egress first
// (previous_hosts), and at least egressMinRetries of them are allowed. p
// is changed in place.
func withEgressFailover(p *routev3.RetryPolicy) *routev3.RetryPolicy {
	if p == nil {
		p = &routev3.RetryPolicy{}
	}
	on := slices.DeleteFunc(strings.Split(p.RetryOn, ","), func(s string) bool { return s == "" })
	for _, c := range strings.Split(egressRetryOn, ",") {
		if !slices.Contains(on, c) {
			on = append(on, c)
		}
	}
	p.RetryOn = strings.Join(on, ",")
	// Without num_retries Envoy allows one.
	if p.NumRetries.GetValue() < egressMinRetries {
		p.NumRetries = wrapperspb.UInt32(egressMinRetries)
	}
	if !slices.ContainsFunc(p.RetryHostPredicate, func(hp *routev3.RetryPolicy_RetryHostPredicate) bool { return hp.Name == previousHostsPredicateName }) {
		prev, err := pack(&previoushostsv3.PreviousHostsPredicate{})
		if err != nil {
			panic(fmt.Sprintf("render: pack previous_hosts: %v", err)) // static valid message, cannot fail
		}
		p.RetryHostPredicate = append(p.RetryHostPredicate, &routev3.RetryPolicy_RetryHostPredicate{
			Name: previousHostsPredicateName, ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: prev},
		})
	}
	p.HostSelectionRetryMaxAttempts = max(p.HostSelectionRetryMaxAttempts, egressHostSelectionAttempts)
	return p
}

// egressConnects is a workload tcp_proxy's max_connect_attempts via the
// egresses: MeshRetry's tcp.maxConnectAttempt (nil: Envoy's one), but never
// fewer than the egress failover needs.
func egressConnects(tp *tcpproxyv3.TcpProxy) {
	tp.MaxConnectAttempts = wrapperspb.UInt32(max(tp.MaxConnectAttempts.GetValue(), egressConnectAttempts))
}

// egressRoutes is the route table of s's chain on an egress: everything to
// s's upstream cluster with the endpoint's name as Host (DNS endpoints),
// and the hash policies of the egress's MeshLoadBalancingStrategy, which
// shapes that cluster. No timeout of its own: the workload's route times
// requests and idle streams out (MeshTimeout), and the egress must not cut
// them first (Kuma's egress routes have timeout 0 too).
func (r *renderer) egressRoutes(s *model.Service, eff *policy.Effective) ([]*routev3.Route, error) {
	action := &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: s.ClusterName()},
		Timeout:          durationpb.New(0),
		IdleTimeout:      durationpb.New(0),
		HashPolicy:       hashPolicies(confOf[resource.MeshLoadBalancingStrategyConf](eff, resource.KindMeshLoadBalancingStrategy)),
	}
	autoHostRewrite(action, s)
	rt := &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: action},
	}
	if r.opts.pluginOn() {
		// The meshext filter names its cluster in this header; it must not
		// leave the mesh.
		rt.RequestHeadersToRemove = []string{egress.DefaultClusterHeader}
	}
	return []*routev3.Route{rt}, nil
}

// meshCASecret is the mesh CA certificate as a validation context.
func meshCASecret(mt *model.MeshMTLS) *tlsv3.Secret {
	return &tlsv3.Secret{Name: names.MeshCASecret(mt.Mesh), Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: inlineBytes(mt.CACert),
	}}}
}

// identitySecret is node's certificate and key in mt's mesh.
func identitySecret(mt *model.MeshMTLS, id *model.Identity) *tlsv3.Secret {
	return &tlsv3.Secret{Name: names.IdentitySecret(mt.Mesh, id.Node), Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inlineBytes(id.CertPEM),
		PrivateKey:       inlineBytes(id.KeyPEM),
	}}}
}

// meshSecrets are the secrets node uses in s's mesh: the mesh CA and
// node's identity. It fails when the identity step gave node none.
func (r *renderer) meshSecrets(s *model.Service, node string) (*model.MeshMTLS, []*tlsv3.Secret, error) {
	mt := r.world.MTLS[s.Mesh]
	id := mt.Identities[node]
	if id == nil || len(mt.CACert) == 0 {
		return nil, nil, fmt.Errorf("mesh %q has mTLS on and node %q has no identity in it", s.Mesh, node)
	}
	secrets := []*tlsv3.Secret{meshCASecret(mt), identitySecret(mt, id)}
	for _, sec := range secrets {
		if err := validate(sec); err != nil {
			return nil, nil, fmt.Errorf("tls secret %s: %w", sec.Name, err)
		}
	}
	return mt, secrets, nil
}

// workloadCluster is s's cluster on a workload node of an mTLS mesh: the
// zone's egresses, mTLS with the node's identity, the egress validated
// against the mesh CA by its exact SPIFFE ID, ALPN "kuma", SNI = s.SNI.
// Round robin over the egresses; outlier detection ejects one that keeps
// failing, and connect failures are retried on another (tcp_proxy
// max_connect_attempts, HTTP retry policy).
func (r *renderer) workloadCluster(s *model.Service, node string) (*clusterv3.Cluster, []*tlsv3.Secret, error) {
	if len(r.world.ZoneEgresses) == 0 {
		return nil, nil, fmt.Errorf("no ZoneEgress in this zone")
	}
	mt, secrets, err := r.meshSecrets(s, node)
	if err != nil {
		return nil, nil, err
	}
	name := s.ClusterName()
	c := &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		OutlierDetection:     defaultOutlierDetection(),
	}
	var eps []*endpointv3.LbEndpoint
	for _, z := range r.world.ZoneEgresses {
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: socketAddress(z.Networking.Address, uint32(z.Networking.Port)),
		}}})
	}
	c.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
	if opts := protocolOptions(s.Protocol); opts != nil {
		a, err := pack(opts)
		if err != nil {
			return nil, nil, err
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: a}
	}
	params, err := tlsParams(resource.TLS12, resource.TLS13)
	if err != nil {
		return nil, nil, err
	}
	up := &tlsv3.UpstreamTlsContext{
		Sni: s.SNI,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      params,
			AlpnProtocols:                  []string{kumaALPN},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{r.sdsRef(names.IdentitySecret(mt.Mesh, node))},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_URI,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: names.SPIFFEID(mt.Mesh, names.ZoneEgressService)}},
				}}},
				ValidationContextSdsSecretConfig: r.sdsRef(names.MeshCASecret(mt.Mesh)),
			}},
		},
	}
	a, err := pack(up)
	if err != nil {
		return nil, nil, err
	}
	c.TransportSocket = &corev3.TransportSocket{Name: transportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}
	if err := validate(c); err != nil {
		return nil, nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	return c, secrets, nil
}

// EgressListenerName is a ZoneEgress's listener, Kuma's inbound name.
func EgressListenerName(z *resource.ZoneEgress) string {
	return "inbound:" + net.JoinHostPort(z.Networking.Address, strconv.FormatInt(z.Networking.Port, 10))
}

// egressNode assembles a ZoneEgress's config: for every ready service of
// every mTLS mesh its upstream cluster as the egress's policies shape it
// (policyCluster) and its secrets, one filter chain on the egress listener,
// and the mesh CA and the egress's identity; then the collectors its
// access logs use.
func (r *renderer) egressNode(z *resource.ZoneEgress, services []*rendered) (*Node, []string, error) {
	n := &Node{ID: names.ZoneEgressNodeID(z.Name), ZoneEgress: z, AdminPort: resource.DefaultZoneEgressAdminPort}
	if a := z.Networking.Admin; a != nil && a.Port > 0 {
		n.AdminPort = uint32(a.Port)
	}
	var warnings []string
	secretSeen := map[string]bool{}
	addSecrets := func(ss []*tlsv3.Secret) {
		for _, sec := range ss {
			if !secretSeen[sec.Name] {
				secretSeen[sec.Name] = true
				n.Secrets = append(n.Secrets, sec)
			}
		}
	}
	var chains []*listenerv3.FilterChain
	var digests []lazyDigest
	for _, rs := range services {
		s := rs.svc
		if r.world.MTLS[s.Mesh] == nil {
			continue
		}
		_, secrets, err := r.meshSecrets(s, n.ID)
		var cluster *clusterv3.Cluster
		var d lazyDigest
		if err == nil {
			cluster, d, err = r.policyCluster(n, rs)
		}
		if err == nil {
			var fc *listenerv3.FilterChain
			if fc, err = r.egressChain(n, s); err == nil {
				chains = append(chains, fc)
			}
		}
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("node %s: %s/%s: %v (service skipped on this egress)", n.ID, s.Mesh, s.Name, err))
			continue
		}
		n.Clusters = append(n.Clusters, cluster)
		addSecrets(rs.secrets)
		addSecrets(secrets)
		digests = append(digests, d)
	}
	nsvc := len(n.Clusters)
	if len(chains) > 0 {
		// Envoy refuses a listener without filter chains; with no service
		// the egress has nothing to serve (Kuma sends none either).
		tlsInspector, err := r.shared.get("tls-inspector", func() (any, error) { return pack(&tlsinspectorv3.TlsInspector{}) })
		if err != nil {
			return nil, nil, err
		}
		l := &listenerv3.Listener{
			Name:             EgressListenerName(z),
			Address:          socketAddress(z.Networking.Address, uint32(z.Networking.Port)),
			TrafficDirection: corev3.TrafficDirection_INBOUND,
			ListenerFilters: []*listenerv3.ListenerFilter{{
				Name:       "envoy.filters.listener.tls_inspector",
				ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: tlsInspector.(*anypb.Any)},
			}},
			FilterChains: chains,
		}
		if err := validate(l); err != nil {
			return nil, nil, err
		}
		n.Listeners = append(n.Listeners, l)
	}
	oc, err := r.accessLogClusters(n)
	if err != nil {
		return nil, nil, err
	}
	n.Clusters = append(n.Clusters, oc...)
	n.AccessLogFIFO = r.pol.fifo[n.ID]
	warnings = append(warnings, prefixAll("node "+n.ID+": ", r.pol.notes[n.ID])...)
	// Version: the upstream clusters' digests (with their TLS secrets)
	// plus the node's own resources.
	n.setVersion(digests, nsvc, true)
	return n, warnings, nil
}

// egressChain is s's filter chain on an egress: chosen by s's SNI on a TLS
// connection, which must present a client certificate of s's mesh CA with a
// URI SAN spiffe://<mesh>/...; then authorization and the way to s's
// upstream cluster (serviceFilters).
func (r *renderer) egressChain(n *Node, s *model.Service) (*listenerv3.FilterChain, error) {
	mt := r.world.MTLS[s.Mesh]
	filters, _, err := r.serviceFilters(n, s)
	if err != nil {
		return nil, err
	}
	params, err := tlsParams(resource.TLS12, resource.TLS13)
	if err != nil {
		return nil, err
	}
	down := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		// No session resumption: Envoy does not validate the client
		// certificate again on a resumed session and then reports it as not
		// validated, so the caller would have no identity (RBAC's
		// mtls_authenticated and the Go filter both refuse it; seen on
		// loopback with the seventh connection of one workload). Every
		// connection proves its certificate, which also makes a rotated or
		// replaced certificate count at once.
		SessionTicketKeysType:            &tlsv3.DownstreamTlsContext_DisableStatelessSessionResumption{DisableStatelessSessionResumption: true},
		DisableStatefulSessionResumption: true,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      params,
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{r.sdsRef(names.IdentitySecret(mt.Mesh, n.ID))},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_URI,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: names.SPIFFEPrefix(mt.Mesh)}},
				}}},
				ValidationContextSdsSecretConfig: r.sdsRef(names.MeshCASecret(mt.Mesh)),
			}},
		},
	}
	a, err := pack(down)
	if err != nil {
		return nil, err
	}
	return &listenerv3.FilterChain{
		Name:             s.ClusterName(),
		FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{s.SNI}, TransportProtocol: "tls"},
		Filters:          filters,
		TransportSocket:  &corev3.TransportSocket{Name: transportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}},
	}, nil
}

// egressAuthz authorizes s's callers on an egress by their verified SPIFFE
// ID, from the policies that apply to this egress (AuthzConfig with the
// egress as the node): the meshext filter (requireClientCertificate: no
// certificate, no request) or native HTTP RBAC for HTTP services, network
// RBAC for TCP services (a denied connection is closed at its first bytes).
func (r *renderer) egressAuthz(n *Node, s *model.Service) ([]*listenerv3.Filter, []*hcmv3.HttpFilter, error) {
	cfg := AuthzConfig(r.world, &n.ZoneEgress.Meta, core.Identity{Mesh: s.Mesh, Service: names.ZoneEgressService}, []*model.Service{s})
	cfg.DefaultService = s.Name
	if isHTTP(s) && r.opts.pluginOn() {
		f, err := r.meshextFilter(&egress.FilterConfig{
			Config:                   cfg,
			RequireClientCertificate: true,
			FixedCluster:             true,
			TableKey:                 "egress:" + s.ClusterName(),
		})
		if err != nil {
			return nil, nil, err
		}
		return nil, []*hcmv3.HttpFilter{f}, nil
	}
	t, err := core.Compile(&cfg)
	if err != nil {
		return nil, nil, err
	}
	e := t.Default()
	if !isHTTP(s) {
		f, err := networkFilter(rbac.NetworkFilterName, rbac.Network(e, rbac.ByClientCertificate, s.ClusterName()))
		if err != nil {
			return nil, nil, err
		}
		return []*listenerv3.Filter{f}, nil, nil
	}
	a, err := pack(rbac.HTTP(e, rbac.ByClientCertificate))
	if err != nil {
		return nil, nil, err
	}
	return nil, []*hcmv3.HttpFilter{{Name: rbac.HTTPFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}}, nil
}

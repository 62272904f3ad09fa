package render

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	otelv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/open_telemetry/v3"
	commondnsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/common/dns/v3"
	otlpcommon "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
)

// Kuma's default access-log formats (meshaccesslog plugin/xds, v2.14), for a
// backend without a format.
const (
	defaultTCPLogFormat  = `[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes`
	defaultHTTPLogFormat = `[%START_TIME%] %KUMA_MESH% "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-B3-TRACEID?X-DATADOG-TRACEID)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%KUMA_SOURCE_SERVICE%" "%KUMA_DESTINATION_SERVICE%" "%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%" "%UPSTREAM_HOST%"`
)

// defaultOtelPort is OTLP/gRPC's port, Kuma's default for an endpoint without one.
const defaultOtelPort = 4317

// Tcp backends: Envoy has no logger that writes lines to a TCP socket.
// As Kuma does (kuma-dp relays them), Envoy writes each record as
// {"address": ..., "message": ...} to a FIFO, and meshext's relay
// (controller/accesslog, run by `meshext run`) sends the message to the
// address. Each node has a FIFO of its own, AccessLogFIFODir/<node>.fifo,
// so records of two Envoys never interleave.

// AccessLogFIFO is the FIFO of node id in dir.
func AccessLogFIFO(dir, id string) string {
	return filepath.Join(dir, names.PathElement(id)+".fifo")
}

// kumaValues replaces Kuma's %KUMA_*% placeholders with what they stand
// for on traffic from node n to s (Kuma's InterpolateKumaValues). The
// source service is the node's (SourceIdentity), the destination the
// MeshExternalService's display name; a node without Dataplane has no
// address. At an egress the source is the caller, known per connection
// only: its verified URI SANs and its address, as Envoy operators (Kuma's
// zone proxies write "unknown").
func kumaValues(n *Node, s *model.Service) *strings.Replacer {
	dest := s.Name
	if s.Resource != nil {
		dest = s.Resource.DisplayName()
	}
	return kumaValuesTo(n, s.Mesh, dest)
}

func kumaValuesTo(n *Node, mesh, dest string) *strings.Replacer {
	if z := n.ZoneEgress; z != nil {
		return strings.NewReplacer(
			"%KUMA_SOURCE_ADDRESS%", "%DOWNSTREAM_REMOTE_ADDRESS%",
			"%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
			"%KUMA_SOURCE_SERVICE%", "%DOWNSTREAM_PEER_URI_SAN%",
			"%KUMA_DESTINATION_SERVICE%", dest,
			"%KUMA_MESH%", mesh,
			"%KUMA_TRAFFIC_DIRECTION%", "UNSPECIFIED",
			"%KUMA_ZONE%", cmp.Or(z.Zone, z.Labels[resource.LabelZone]),
			"%KUMA_WORKLOAD%", "",
		)
	}
	src := SourceIdentity(n.Dataplane, mesh)
	var ip, zone, workload string
	if dp := n.Dataplane; dp != nil {
		ip = dp.Networking.Address
		zone = dp.Labels[resource.LabelZone]
		if wl := dp.Labels["kuma.io/workload"]; wl != "" {
			workload = "kri_wl_" + dp.Mesh + "_" + zone + "_" + dp.Labels[resource.LabelNamespace] + "_" + wl + "_"
		}
	}
	return strings.NewReplacer(
		"%KUMA_SOURCE_ADDRESS%", net.JoinHostPort(ip, "0"),
		"%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%", ip,
		"%KUMA_SOURCE_SERVICE%", src.Service,
		"%KUMA_DESTINATION_SERVICE%", dest,
		"%KUMA_MESH%", mesh,
		"%KUMA_TRAFFIC_DIRECTION%", "OUTBOUND",
		"%KUMA_ZONE%", zone,
		"%KUMA_WORKLOAD%", workload,
	)
}

// tcpAccessLogs is MeshAccessLog on a tcp_proxy (none without one: Kuma's default).
func (r *renderer) tcpAccessLogs(n *Node, s *model.Service, eff *policy.Effective) ([]*accesslogv3.AccessLog, error) {
	conf := confOf[resource.MeshAccessLogConf](eff, resource.KindMeshAccessLog)
	if conf == nil {
		return nil, nil
	}
	return r.accessLogs(n, s, conf, defaultTCPLogFormat, nil)
}

// httpAccessLogs is MeshAccessLog on an HTTP connection manager. A
// MeshAccessLog aimed at a MeshHTTPRoute logs that route's requests with
// its own backends, and the service's backends log the other requests
// (Kuma tells them apart with route metadata and a Lua filter; meshext
// with a CEL filter on the route name).
func (r *renderer) httpAccessLogs(n *Node, s *model.Service, eff *policy.Effective) ([]*accesslogv3.AccessLog, error) {
	var own []string // route names with their own MeshAccessLog conf
	var out []*accesslogv3.AccessLog
	if eff != nil {
		keys := make([]policy.RouteKey, 0, len(eff.RouteConfs))
		for k, confs := range eff.RouteConfs {
			if confs[resource.KindMeshAccessLog] != nil {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, func(a, b policy.RouteKey) int { return strings.Compare(a.Mesh+"/"+a.Name, b.Mesh+"/"+b.Name) })
		for _, k := range keys {
			name := r.routeName(policy.Origin{Kind: resource.KindMeshHTTPRoute, Mesh: k.Mesh, Name: k.Name})
			if name == "" {
				continue
			}
			own = append(own, name)
			f, err := celFilter("xds.route_name == " + celString(name))
			if err != nil {
				return nil, err
			}
			conf := eff.RouteConfs[k][resource.KindMeshAccessLog].Value.(*resource.MeshAccessLogConf)
			logs, err := r.accessLogs(n, s, conf, defaultHTTPLogFormat, f)
			if err != nil {
				return nil, err
			}
			out = append(out, logs...)
		}
	}
	conf := confOf[resource.MeshAccessLogConf](eff, resource.KindMeshAccessLog)
	if conf == nil {
		return out, nil
	}
	var shared *accesslogv3.AccessLogFilter
	if len(own) > 0 {
		quoted := make([]string, len(own))
		for i, name := range own {
			quoted[i] = celString(name)
		}
		var err error
		if shared, err = celFilter("!(xds.route_name in [" + strings.Join(quoted, ", ") + "])"); err != nil {
			return nil, err
		}
	}
	logs, err := r.accessLogs(n, s, conf, defaultHTTPLogFormat, shared)
	return append(logs, out...), err
}

// proxyAccessLogs are the forward-proxy listener's loggers: each service's
// MeshAccessLog backends log the requests that went to its cluster (a CEL
// filter on the cluster name; services with one conf share loggers, so
// there %KUMA_DESTINATION_SERVICE% is the upstream cluster's name).
func (r *renderer) proxyAccessLogs(n *Node, services []*model.Service) ([]*accesslogv3.AccessLog, error) {
	var order []*resource.MeshAccessLogConf
	clusters := map[*resource.MeshAccessLogConf][]string{}
	for _, s := range services {
		conf := confOf[resource.MeshAccessLogConf](r.policiesFor(n, s), resource.KindMeshAccessLog)
		if conf == nil {
			continue
		}
		if clusters[conf] == nil {
			order = append(order, conf)
		}
		clusters[conf] = append(clusters[conf], celString(s.ClusterName()))
	}
	var out []*accesslogv3.AccessLog
	for _, conf := range order {
		f, err := celFilter("xds.cluster_name in [" + strings.Join(clusters[conf], ", ") + "]")
		if err != nil {
			return nil, err
		}
		logs, err := r.accessLogsWith(n, services[0], kumaValuesTo(n, services[0].Mesh, "%UPSTREAM_CLUSTER%"), conf, defaultHTTPLogFormat, f)
		if err != nil {
			return nil, err
		}
		out = append(out, logs...)
	}
	return out, nil
}

// accessLogs turns conf's backends into Envoy access loggers for traffic
// from n to s, each with filter (nil = every request or connection).
func (r *renderer) accessLogs(n *Node, s *model.Service, conf *resource.MeshAccessLogConf, defaultFormat string,
	filter *accesslogv3.AccessLogFilter) ([]*accesslogv3.AccessLog, error) {
	return r.accessLogsWith(n, s, kumaValues(n, s), conf, defaultFormat, filter)
}

func (r *renderer) accessLogsWith(n *Node, s *model.Service, kuma *strings.Replacer, conf *resource.MeshAccessLogConf, defaultFormat string,
	filter *accesslogv3.AccessLogFilter) ([]*accesslogv3.AccessLog, error) {
	if conf.Backends == nil {
		return nil, nil
	}
	var out []*accesslogv3.AccessLog
	for i, b := range *conf.Backends {
		var name string
		var cfg proto.Message
		switch {
		case b.Type == resource.BackendFile && b.File != nil:
			name, cfg = "envoy.access_loggers.file", &filev3.FileAccessLog{
				Path:            b.File.Path,
				AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: formatString(b.File.Format, defaultFormat, kuma)},
			}
		case b.Type == resource.BackendTCP && b.TCP != nil:
			fifo := r.fifo(n)
			if fifo == "" {
				r.note(n, "%s/%s: MeshAccessLog Tcp backend %s not rendered: no access-log relay (meshext run relays Tcp backends; render needs --access-log-fifo-dir)",
					s.Mesh, s.Name, b.TCP.Address)
				continue
			}
			name, cfg = "envoy.access_loggers.file", &filev3.FileAccessLog{
				Path:            fifo,
				AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: relayFormat(b.TCP, defaultFormat, kuma)},
			}
		case b.Type == resource.BackendOpenTelemetry && b.OpenTelemetry != nil:
			otel, err := r.otelConfig(n, s, b.OpenTelemetry, defaultFormat, kuma)
			if err != nil {
				return nil, fmt.Errorf("MeshAccessLog backends[%d]: %w", i, err)
			}
			name, cfg = "envoy.access_loggers.open_telemetry", otel
		default:
			continue
		}
		a, err := pack(cfg)
		if err != nil {
			return nil, fmt.Errorf("MeshAccessLog backends[%d]: %w", i, err)
		}
		out = append(out, &accesslogv3.AccessLog{Name: name, Filter: filter, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: a}})
	}
	return out, nil
}

// formatString is a File backend's format: plain text (one line each) or
// JSON, Kuma's default when none; %KUMA_*% replaced.
func formatString(f *resource.AccessLogFormat, defaultFormat string, kuma *strings.Replacer) *corev3.SubstitutionFormatString {
	switch {
	case f != nil && f.JSON != nil:
		return &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: jsonFields(*f.JSON, kuma)},
			OmitEmptyValues: f.OmitEmptyValues}
	case f != nil && f.Plain != nil:
		return textFormat(kuma.Replace(*f.Plain)+"\n", f.OmitEmptyValues)
	}
	return textFormat(kuma.Replace(defaultFormat)+"\n", false)
}

// relayFormat is a Tcp backend's record for the relay: the address and
// the message (a line of text, or a JSON object the relay writes as one
// line).
func relayFormat(t *resource.AccessLogTCPBackend, defaultFormat string, kuma *strings.Replacer) *corev3.SubstitutionFormatString {
	msg := structpb.NewStringValue(kuma.Replace(defaultFormat) + "\n")
	omit := false
	if f := t.Format; f != nil {
		omit = f.OmitEmptyValues
		switch {
		case f.JSON != nil:
			msg = structpb.NewStructValue(jsonFields(*f.JSON, kuma))
		case f.Plain != nil:
			msg = structpb.NewStringValue(kuma.Replace(*f.Plain) + "\n")
		}
	}
	return &corev3.SubstitutionFormatString{
		Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: &structpb.Struct{Fields: map[string]*structpb.Value{
			"address": structpb.NewStringValue(t.Address),
			"message": msg,
		}}},
		OmitEmptyValues: omit,
	}
}

func textFormat(s string, omitEmpty bool) *corev3.SubstitutionFormatString {
	return &corev3.SubstitutionFormatString{
		Format:          &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}},
		OmitEmptyValues: omitEmpty,
	}
}

func jsonFields(kvs []resource.AccessLogJSONKey, kuma *strings.Replacer) *structpb.Struct {
	st := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, kv := range kvs {
		st.Fields[kv.Key] = structpb.NewStringValue(kuma.Replace(kv.Value))
	}
	return st
}

// otelConfig is an OpenTelemetry backend: OTLP/gRPC to the endpoint's
// cluster, the body (Kuma's default format when none), attributes, and
// Kuma's resource attributes.
func (r *renderer) otelConfig(n *Node, s *model.Service, o *resource.AccessLogOtelBackend, defaultFormat string, kuma *strings.Replacer) (*otelv3.OpenTelemetryAccessLogConfig, error) {
	cluster, err := r.otelCluster(n, o.Endpoint)
	if err != nil {
		return nil, err
	}
	body := &otlpcommon.AnyValue{Value: &otlpcommon.AnyValue_StringValue{StringValue: kuma.Replace(defaultFormat)}}
	switch v := o.Body.(type) {
	case nil:
	case string:
		body.Value = &otlpcommon.AnyValue_StringValue{StringValue: kuma.Replace(v)}
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("openTelemetry.body: %w", err)
		}
		parsed := &otlpcommon.AnyValue{}
		if err := protojson.Unmarshal(raw, parsed); err == nil {
			interpolateAnyValue(parsed, kuma)
			body = parsed
		} else {
			body.Value = &otlpcommon.AnyValue_StringValue{StringValue: kuma.Replace(string(raw))}
		}
	}
	attrs := &otlpcommon.KeyValueList{}
	if o.Attributes != nil {
		for _, kv := range *o.Attributes {
			attrs.Values = append(attrs.Values, &otlpcommon.KeyValue{Key: kv.Key, Value: &otlpcommon.AnyValue{
				Value: &otlpcommon.AnyValue_StringValue{StringValue: kuma.Replace(kv.Value)}}})
		}
	}
	str := func(v string) *otlpcommon.AnyValue {
		return &otlpcommon.AnyValue{Value: &otlpcommon.AnyValue_StringValue{StringValue: v}}
	}
	res := &otlpcommon.KeyValueList{Values: []*otlpcommon.KeyValue{{Key: "kuma.mesh", Value: str(s.Mesh)}}}
	if dp := n.Dataplane; dp != nil && dp.Labels[resource.LabelZone] != "" {
		res.Values = append(res.Values, &otlpcommon.KeyValue{Key: "kuma.zone", Value: str(dp.Labels[resource.LabelZone])})
	}
	return &otelv3.OpenTelemetryAccessLogConfig{
		LogName:            "MeshAccessLog",
		GrpcService:        &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}}},
		Body:               body,
		Attributes:         attrs,
		ResourceAttributes: res,
	}, nil
}

func interpolateAnyValue(v *otlpcommon.AnyValue, kuma *strings.Replacer) {
	switch x := v.GetValue().(type) {
	case *otlpcommon.AnyValue_StringValue:
		x.StringValue = kuma.Replace(x.StringValue)
	case *otlpcommon.AnyValue_ArrayValue:
		for _, e := range x.ArrayValue.GetValues() {
			interpolateAnyValue(e, kuma)
		}
	case *otlpcommon.AnyValue_KvlistValue:
		for _, kv := range x.KvlistValue.GetValues() {
			kv.Key = kuma.Replace(kv.Key)
			if kv.Value != nil {
				interpolateAnyValue(kv.Value, kuma)
			}
		}
	}
}

// otelClusters are one node's OpenTelemetry collector clusters, by name.
type otelClusters struct {
	names    []string
	clusters map[string]*clusterv3.Cluster
}

// otelCluster is the cluster of an OpenTelemetry endpoint (host:port, port
// 4317 when left out) on node n, named after the endpoint so it stays the
// same whatever else the node logs to.
func (r *renderer) otelCluster(n *Node, endpoint string) (string, error) {
	host, port := endpoint, uint32(defaultOtelPort)
	if h, p, err := net.SplitHostPort(endpoint); err == nil {
		pn, err := strconv.ParseUint(p, 10, 16)
		if err != nil || pn == 0 {
			return "", fmt.Errorf("openTelemetry.endpoint %q: bad port", endpoint)
		}
		host, port = h, uint32(pn)
	}
	name := "meshaccesslog:opentelemetry:" + net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
	oc := r.pol.otel[n.ID]
	if oc == nil {
		oc = &otelClusters{clusters: map[string]*clusterv3.Cluster{}}
		r.pol.otel[n.ID] = oc
	}
	if _, ok := oc.clusters[name]; ok {
		return name, nil
	}
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(connectTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, port)}}}},
		}}},
	}
	if hostIsIP(host) {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	} else {
		family := commondnsv3.DnsLookupFamily_V4_ONLY
		dc, err := r.shared.get("dns-cluster-type/"+family.String(), func() (any, error) { return r.dnsClusterType(family) })
		if err != nil {
			return "", err
		}
		c.ClusterDiscoveryType = dc.(*clusterv3.Cluster_ClusterType)
	}
	// OTLP/gRPC is HTTP/2.
	opts := protocolOptions(resource.ProtocolGRPC)
	a, err := pack(opts)
	if err != nil {
		return "", err
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: a}
	if err := validate(c); err != nil {
		return "", fmt.Errorf("cluster %s: %w", name, err)
	}
	oc.names = append(oc.names, name)
	oc.clusters[name] = c
	return name, nil
}

// accessLogClusters are the OpenTelemetry clusters node n's loggers use.
func (r *renderer) accessLogClusters(n *Node) ([]*clusterv3.Cluster, error) {
	oc := r.pol.otel[n.ID]
	if oc == nil {
		return nil, nil
	}
	out := make([]*clusterv3.Cluster, 0, len(oc.names))
	for _, name := range oc.names {
		out = append(out, oc.clusters[name])
	}
	return out, nil
}

// fifo is node n's relay FIFO ("" when there is no relay).
func (r *renderer) fifo(n *Node) string {
	if r.opts.AccessLogFIFODir == "" {
		return ""
	}
	p := AccessLogFIFO(r.opts.AccessLogFIFODir, n.ID)
	r.pol.fifo[n.ID] = p
	return p
}

func celFilter(expr string) (*accesslogv3.AccessLogFilter, error) {
	a, err := pack(&celv3.ExpressionFilter{Expression: expr})
	if err != nil {
		return nil, err
	}
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{ExtensionFilter: &accesslogv3.ExtensionFilter{
		Name: "envoy.access_loggers.extension_filters.cel", ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: a},
	}}}, nil
}

// celString quotes s as a CEL string literal.
func celString(s string) string { return strconv.Quote(s) }

// generateRequestID says whether an HCM makes up an x-request-id for requests
// that come without one: only where a MeshAccessLog writes it (Kuma's
// default format has %REQ(X-REQUEST-ID)%). meshext renders no tracing, so
// nothing else in the mesh reads the ID, and Envoy's UUID per request was
// 4 % of a gRPC request's instructions on the outbound. A deliberate
// difference from Kuma, which leaves Envoy's default (always) in place; a
// caller's own x-request-id passes through either way.
func generateRequestID(logs []*accesslogv3.AccessLog) *wrapperspb.BoolValue {
	return wrapperspb.Bool(len(logs) > 0)
}

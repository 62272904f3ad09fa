package render

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	hcfilev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/health_check/event_sinks/file/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/resource"
)

// Kuma's MeshHealthCheck defaults (plugin/xds/configurer.go, v2.14).
const (
	defaultHCInterval           = time.Minute
	defaultHCTimeout            = 15 * time.Second
	defaultHCUnhealthyThreshold = 5
	defaultHCHealthyThreshold   = 1
	defaultHCPath               = "/"
)

// configureHealthCheck is MeshHealthCheck: an active health check of the
// kind the service's protocol calls for (Kuma's selectHealthCheckType: http
// for http and http2, grpc for grpc, tcp for tcp, and tcp as the fallback
// when the protocol's own check is disabled), plus the panic settings.
//
// Two deliberate differences from Kuma: tcp.send and tcp.receive are sent
// and expected as the bytes their base64 encodes (Kuma sends the base64
// text itself), and an HTTP or gRPC check of a DNS endpoint sends the
// endpoint's name as Host/authority (Kuma sends the cluster name, which an
// external server's virtual hosting does not know).
func configureHealthCheck(conf *resource.MeshHealthCheckConf, protocol string, c *clusterv3.Cluster) error {
	if conf.HealthyPanicThreshold != nil {
		p, err := percent(*conf.HealthyPanicThreshold)
		if err != nil {
			return fmt.Errorf("healthyPanicThreshold: %w", err)
		}
		commonLb(c).HealthyPanicThreshold = p
	}
	if conf.FailTrafficOnPanic != nil {
		lb := commonLb(c)
		if lb.GetLocalityWeightedLbConfig() == nil {
			za := lb.GetZoneAwareLbConfig()
			if za == nil {
				za = &clusterv3.Cluster_CommonLbConfig_ZoneAwareLbConfig{}
				lb.LocalityConfigSpecifier = &clusterv3.Cluster_CommonLbConfig_ZoneAwareLbConfig_{ZoneAwareLbConfig: za}
			}
			za.FailTrafficOnPanic = *conf.FailTrafficOnPanic
		}
	}
	hc := &corev3.HealthCheck{
		Interval:           durationpb.New(durationOr(conf.Interval, defaultHCInterval)),
		Timeout:            durationpb.New(durationOr(conf.Timeout, defaultHCTimeout)),
		UnhealthyThreshold: wrapperspb.UInt32(uint32(int32Or(conf.UnhealthyThreshold, defaultHCUnhealthyThreshold))),
		HealthyThreshold:   wrapperspb.UInt32(uint32(int32Or(conf.HealthyThreshold, defaultHCHealthyThreshold))),
	}
	switch healthCheckType(protocol, conf) {
	case "http":
		h := conf.HTTP
		hh := &corev3.HealthCheck_HttpHealthCheck{Path: defaultHCPath, CodecClientType: typev3.CodecClientType_HTTP1}
		if protocol == resource.ProtocolHTTP2 {
			hh.CodecClientType = typev3.CodecClientType_HTTP2
		}
		if h.Path != nil {
			hh.Path = *h.Path
		}
		if h.ExpectedStatuses != nil {
			for _, st := range *h.ExpectedStatuses {
				hh.ExpectedStatuses = append(hh.ExpectedStatuses, &typev3.Int64Range{Start: int64(st), End: int64(st) + 1})
			}
		}
		if hd := h.RequestHeadersToAdd; hd != nil {
			hh.RequestHeadersToAdd = append(hh.RequestHeadersToAdd, healthCheckHeaders(hd.Add, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)...)
			hh.RequestHeadersToAdd = append(hh.RequestHeadersToAdd, healthCheckHeaders(hd.Set, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)...)
		}
		hc.HealthChecker = &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: hh}
		healthCheckHostnames(c)
	case "grpc":
		g := &corev3.HealthCheck_GrpcHealthCheck{}
		if conf.GRPC.ServiceName != nil {
			g.ServiceName = *conf.GRPC.ServiceName
		}
		if conf.GRPC.Authority != nil {
			g.Authority = *conf.GRPC.Authority
		} else {
			healthCheckHostnames(c)
		}
		hc.HealthChecker = &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: g}
	case "tcp":
		t := &corev3.HealthCheck_TcpHealthCheck{}
		if conf.TCP.Send != nil {
			p, err := hexPayload(*conf.TCP.Send)
			if err != nil {
				return fmt.Errorf("tcp.send: %w", err)
			}
			t.Send = p
		}
		if conf.TCP.Receive != nil {
			for i, r := range *conf.TCP.Receive {
				p, err := hexPayload(r)
				if err != nil {
					return fmt.Errorf("tcp.receive[%d]: %w", i, err)
				}
				t.Receive = append(t.Receive, p)
			}
		}
		hc.HealthChecker = &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: t}
	default:
		return nil
	}
	if conf.InitialJitter != nil {
		hc.InitialJitter = durationpb.New(conf.InitialJitter.Duration)
	}
	if conf.IntervalJitter != nil {
		hc.IntervalJitter = durationpb.New(conf.IntervalJitter.Duration)
	}
	if conf.IntervalJitterPercent != nil {
		hc.IntervalJitterPercent = uint32(*conf.IntervalJitterPercent)
	}
	if conf.EventLogPath != nil {
		sink, err := pack(&hcfilev3.HealthCheckEventFileSink{EventLogPath: *conf.EventLogPath})
		if err != nil {
			return err
		}
		hc.EventLogger = []*corev3.TypedExtensionConfig{{Name: "envoy.health_check.event_sinks.file", TypedConfig: sink}}
	}
	if conf.AlwaysLogHealthCheckFailures != nil {
		hc.AlwaysLogHealthCheckFailures = *conf.AlwaysLogHealthCheckFailures
	}
	if conf.NoTrafficInterval != nil {
		hc.NoTrafficInterval = durationpb.New(conf.NoTrafficInterval.Duration)
	}
	if conf.ReuseConnection != nil {
		hc.ReuseConnection = wrapperspb.Bool(*conf.ReuseConnection)
	}
	c.HealthChecks = append(c.HealthChecks, hc)
	return nil
}

// healthCheckType is Kuma's selectHealthCheckType: "http", "grpc", "tcp" or "".
func healthCheckType(protocol string, conf *resource.MeshHealthCheckConf) string {
	on := func(disabled *bool) bool { return disabled == nil || !*disabled }
	tcpOn := conf.TCP != nil && on(conf.TCP.Disabled)
	switch protocol {
	case resource.ProtocolHTTP, resource.ProtocolHTTP2:
		if conf.HTTP != nil && on(conf.HTTP.Disabled) {
			return "http"
		}
		if conf.HTTP != nil && tcpOn {
			return "tcp"
		}
	case resource.ProtocolGRPC:
		if conf.GRPC != nil && on(conf.GRPC.Disabled) {
			return "grpc"
		}
		if conf.GRPC != nil && tcpOn {
			return "tcp"
		}
	case resource.ProtocolTCP, "":
		if tcpOn {
			return "tcp"
		}
	}
	return ""
}

// healthCheckHostnames makes L7 checks of a DNS endpoint carry its name as
// Host (Envoy's default is the cluster name). It edits a copy of the load
// assignment: c's is shared with its base cluster (policyClone).
func healthCheckHostnames(c *clusterv3.Cluster) {
	named := false
	for _, loc := range c.GetLoadAssignment().GetEndpoints() {
		for _, lbe := range loc.LbEndpoints {
			named = named || lbe.GetEndpoint().GetHostname() != ""
		}
	}
	if !named {
		return
	}
	c.LoadAssignment = proto.Clone(c.LoadAssignment).(*endpointv3.ClusterLoadAssignment)
	for _, loc := range c.GetLoadAssignment().GetEndpoints() {
		for _, lbe := range loc.LbEndpoints {
			ep := lbe.GetEndpoint()
			if ep == nil || ep.Hostname == "" {
				continue
			}
			if ep.HealthCheckConfig == nil {
				ep.HealthCheckConfig = &endpointv3.Endpoint_HealthCheckConfig{}
			}
			ep.HealthCheckConfig.Hostname = ep.Hostname
		}
	}
}

func healthCheckHeaders(hs *[]resource.HeaderKeyValue, action corev3.HeaderValueOption_HeaderAppendAction) []*corev3.HeaderValueOption {
	if hs == nil {
		return nil
	}
	var out []*corev3.HeaderValueOption
	for _, h := range *hs {
		// Kuma splits a value on commas into one header each.
		for _, v := range strings.Split(h.Value, ",") {
			out = append(out, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: h.Name, Value: v}, AppendAction: action})
		}
	}
	return out
}

func hexPayload(b64 string) (*corev3.HealthCheck_Payload, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, err
	}
	return &corev3.HealthCheck_Payload{Payload: &corev3.HealthCheck_Payload_Text{Text: hex.EncodeToString(b)}}, nil
}

func commonLb(c *clusterv3.Cluster) *clusterv3.Cluster_CommonLbConfig {
	if c.CommonLbConfig == nil {
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
	}
	return c.CommonLbConfig
}

// percent is a decimal IntOrString as an Envoy Percent.
func percent(v resource.IntOrString) (*typev3.Percent, error) {
	f, err := v.Float()
	if err != nil {
		return nil, err
	}
	return &typev3.Percent{Value: f}, nil
}

func durationOr(d *resource.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

func int32Or(v *int32, def int32) int32 {
	if v == nil {
		return def
	}
	return *v
}

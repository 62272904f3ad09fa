// Package contrib is adapter A: the meshext HTTP filter for Envoy's contrib
// Go filter (envoy.filters.http.golang, SDK github.com/envoyproxy/envoy
// v1.39). It imports only the SDK's pure-Go api package; the cgo http
// package is linked by plugin/cmd/libmeshext-golang alone (build tag so),
// so go test never links cgo stubs.
package contrib

import (
	"errors"
	"fmt"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/plugin/cthread"
	"github.com/meshext/meshext/plugin/egress"
)

// Parser is the filter's api.StreamFilterConfigParser.
type Parser struct{}

var _ api.StreamFilterConfigParser = Parser{}

// config is the parsed plugin_config. routeErr is set for a per-route
// config, which this filter does not support: Envoy aborts if a route-level
// Parse fails, so the error is carried to request time (fail closed, 500).
type config struct {
	live     *egress.Live
	counters struct{ allowed, denied, shadow, unknown, errors api.CounterMetric }
	routeErr error
}

// Destroy implements api.Config; the table is garbage collected.
func (*config) Destroy() {}

// Parse reads plugin_config: google.protobuf.StringValue or BytesValue with
// the JSON, or google.protobuf.Struct / xds.type.v3.TypedStruct holding it.
// It runs without recover in the SDK, so it recovers itself.
func (Parser) Parse(a *anypb.Any, cb api.ConfigCallbackHandler) (cfg interface{}, err error) {
	defer func() {
		if p := recover(); p != nil {
			if cb == nil {
				cfg, err = &config{routeErr: fmt.Errorf("meshext: panic parsing route config: %v", p)}, nil
				return
			}
			cfg, err = nil, fmt.Errorf("meshext: panic parsing config: %v", p)
		}
	}()
	if cb == nil {
		return &config{routeErr: errors.New("meshext: per-route config is not supported")}, nil
	}
	raw, err := configJSON(a)
	if err != nil {
		return nil, err
	}
	live, err := egress.Load(raw)
	if err != nil {
		return nil, err
	}
	c := &config{live: live}
	c.counters.allowed = cb.DefineCounterMetric(egress.CounterAllowed)
	c.counters.denied = cb.DefineCounterMetric(egress.CounterDenied)
	c.counters.shadow = cb.DefineCounterMetric(egress.CounterShadowDeny)
	c.counters.unknown = cb.DefineCounterMetric(egress.CounterUnknownHost)
	c.counters.errors = cb.DefineCounterMetric(egress.CounterErrors)
	return c, nil
}

// Merge keeps the filter-level config unless a route tried to override it.
func (Parser) Merge(parent, child interface{}) interface{} {
	if c, ok := child.(*config); ok && c.routeErr != nil {
		return c
	}
	return parent
}

func configJSON(a *anypb.Any) ([]byte, error) {
	if a == nil {
		return nil, errors.New("meshext: plugin_config is missing")
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("meshext: plugin_config: %w", err)
	}
	switch v := m.(type) {
	case *wrapperspb.StringValue:
		return []byte(v.GetValue()), nil
	case *wrapperspb.BytesValue:
		return v.GetValue(), nil
	case *structpb.Struct:
		return protojson.Marshal(v)
	case *xdstype.TypedStruct:
		return protojson.Marshal(v.GetValue())
	}
	return nil, fmt.Errorf("meshext: plugin_config type %s is not StringValue, BytesValue, Struct or TypedStruct", a.GetTypeUrl())
}

// Factory is the filter's api.StreamFilterFactory.
func Factory(c interface{}, cb api.FilterCallbackHandler) api.StreamFilter {
	cfg, _ := c.(*config)
	cthread.Tick() // see plugin/cthread: Envoy's workers are C threads
	return &filter{cfg: cfg, cb: cb}
}

type filter struct {
	api.PassThroughStreamFilter
	cfg *config
	cb  api.FilterCallbackHandler
}

var textPlain = map[string][]string{"content-type": {"text/plain; charset=utf-8"}}

// DecodeHeaders decides the request on the Envoy worker thread without
// blocking. Only statuses Envoy understands (Continue, LocalReply) are returned.
func (f *filter) DecodeHeaders(h api.RequestHeaderMap, _ bool) (st api.StatusType) {
	defer func() {
		if p := recover(); p != nil {
			st = f.fail(fmt.Sprint(p))
		}
	}()
	if f.cfg == nil || f.cfg.routeErr != nil {
		msg := "missing config"
		if f.cfg != nil {
			msg = f.cfg.routeErr.Error()
		}
		return f.fail(msg)
	}
	c := f.cfg.live.Current()
	// GetRaw reads one header without copying the whole map into Go.
	authority := h.GetRaw(":authority")
	peer := ""
	if !c.IgnoreClientCertificates {
		peer = f.peerURISAN()
	}
	r := c.Decide(authority, peer)
	dec := f.cb.DecoderFilterCallbacks()
	switch r.Verdict {
	case egress.NotFound:
		f.cfg.counters.unknown.Increment(1)
		f.cb.StreamInfo().DynamicMetadata().Set(egress.MetadataNamespace, egress.MetaAction, "NotFound")
		dec.SendLocalReply(404, egress.NotFoundBody(authority), textPlain, egress.GRPCUnimplemented, egress.DetailUnknownHost)
		return api.LocalReply
	case egress.Reject:
		f.cfg.counters.denied.Increment(1)
		f.setMetadata(&r)
		dec.SendLocalReply(403, r.DenyBody(), textPlain, egress.GRPCPermissionDenied, egress.DetailDenied)
		return api.LocalReply
	}
	if r.Shadow {
		f.cfg.counters.shadow.Increment(1)
		f.cb.Log(api.Info, r.ShadowLog())
	}
	f.cfg.counters.allowed.Increment(1)
	if !c.DenyMetadataOnly || r.Shadow {
		f.setMetadata(&r)
	}
	if c.FixedCluster {
		return api.Continue
	}
	h.Set(c.ClusterHeader, r.Entry.Service.Cluster)
	// Header edits do not re-pick the route; the cluster_header route must see it.
	f.cb.ClearRouteCache()
	return api.Continue
}

// peerURISAN is the first URI SAN of a validated client certificate.
func (f *filter) peerURISAN() string {
	ssl := f.cb.StreamInfo().DownstreamSslConnection()
	if ssl == nil || !ssl.PeerCertificateValidated() {
		return ""
	}
	for _, san := range ssl.UriSanPeerCertificate() {
		return san
	}
	return ""
}

func (f *filter) setMetadata(r *egress.Result) {
	md := f.cb.StreamInfo().DynamicMetadata()
	md.Set(egress.MetadataNamespace, egress.MetaAction, r.ActionName())
	md.Set(egress.MetadataNamespace, egress.MetaMES, r.Entry.Service.Name)
	md.Set(egress.MetadataNamespace, egress.MetaPolicy, r.Decision.PolicyOrReason())
	if r.FromCertificate || r.Verdict == egress.Reject {
		md.Set(egress.MetadataNamespace, egress.MetaSource, r.Source)
	}
	if r.Verdict == egress.Reject {
		md.Set(egress.MetadataNamespace, egress.MetaMesh, r.Entry.Service.Mesh)
	}
}

// fail answers 500 (gRPC INTERNAL) and never panics itself.
func (f *filter) fail(msg string) api.StatusType {
	defer func() { _ = recover() }()
	if f.cfg != nil && f.cfg.counters.errors != nil {
		f.cfg.counters.errors.Increment(1)
	}
	f.cb.Log(api.Error, "meshext: filter error: "+msg)
	f.cb.DecoderFilterCallbacks().SendLocalReply(500, "meshext: internal filter error\n", textPlain, egress.GRPCInternal, egress.DetailError)
	return api.LocalReply
}

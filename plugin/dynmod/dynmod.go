// Package dynmod is adapter B: the meshext HTTP filter for stock Envoy's
// dynamic modules (envoy.filters.http.dynamic_modules). It implements the
// SDK's pure-Go interfaces only; the cgo ABI package is linked by
// plugin/cmd/libmeshext alone, so this package tests with plain go test.
//
// The SDK snapshot in go.mod predates the SDK's own panic barrier, so every
// hook recovers: a Go panic crossing into Envoy would abort the process.
package dynmod

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/envoyproxy/envoy/source/extensions/dynamic_modules/sdk/go/shared"

	"github.com/meshext/meshext/plugin/cthread"
	"github.com/meshext/meshext/plugin/egress"
)

// ConfigFactory parses filter_config (JSON, see egress.FilterConfig) into a
// per-config filter factory. Register it under egress.FilterName.
type ConfigFactory struct{}

var _ shared.HttpFilterConfigFactory = ConfigFactory{}

// Create compiles the configuration. An error makes Envoy reject the
// config update (NACK), keeping the previous one.
func (ConfigFactory) Create(h shared.HttpFilterConfigHandle, raw []byte) (f shared.HttpFilterFactory, err error) {
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, fmt.Errorf("meshext: panic parsing config: %v", p)
		}
	}()
	live, err := egress.Load(raw)
	if err != nil {
		h.Log(shared.LogLevelError, "%v", err)
		return nil, err
	}
	c := live.Current()
	fac := &Factory{live: live}
	fac.counters.allowed = defineCounter(h, egress.CounterAllowed)
	fac.counters.denied = defineCounter(h, egress.CounterDenied)
	fac.counters.shadow = defineCounter(h, egress.CounterShadowDeny)
	fac.counters.unknown = defineCounter(h, egress.CounterUnknownHost)
	fac.counters.errors = defineCounter(h, egress.CounterErrors)
	h.Log(shared.LogLevelInfo, "meshext: loaded %d services, %d host keys", c.Table.Len(), c.Table.HostKeys())
	return fac, nil
}

// CreatePerRoute is not supported: the filter is configured per listener.
func (ConfigFactory) CreatePerRoute([]byte) (any, error) {
	return nil, fmt.Errorf("meshext: per-route config is not supported")
}

// counter is a defined metric; ok is false when the host refused to define it.
type counter struct {
	id shared.MetricID
	ok bool
}

func defineCounter(h shared.HttpFilterConfigHandle, name string) counter {
	id, res := h.DefineCounter(name)
	return counter{id: id, ok: res == shared.MetricsSuccess}
}

// Factory makes a filter per stream. A config update makes Envoy build a
// new Factory; with a tableKey the older factories serve the new table too
// (see egress.FilterConfig.TableKey).
type Factory struct {
	live     *egress.Live
	counters struct{ allowed, denied, shadow, unknown, errors counter }
}

// Create makes the per-stream filter.
func (f *Factory) Create(h shared.HttpFilterHandle) shared.HttpFilter {
	cthread.Tick() // see plugin/cthread: Envoy's workers are C threads
	return &filter{f: f, h: h}
}

// OnDestroy: nothing to release; the table is garbage collected.
func (f *Factory) OnDestroy() {}

type filter struct {
	shared.EmptyHttpFilter
	f *Factory
	h shared.HttpFilterHandle
}

func (x *filter) inc(c counter) {
	if c.ok {
		x.h.IncrementCounterValue(c.id, 1)
	}
}

// OnRequestHeaders decides the request. It runs on the Envoy worker and
// neither blocks nor allocates on the allow path beyond the SDK's own calls.
func (x *filter) OnRequestHeaders(headers shared.HeaderMap, _ bool) (status shared.HeadersStatus) {
	defer func() {
		if p := recover(); p != nil {
			status = x.fail(headers, p)
		}
	}()
	cfg := x.f.live.Current()
	authority := headers.GetOne(":authority").ToUnsafeString()
	peer := ""
	if !cfg.IgnoreClientCertificates {
		peer = x.peerURISAN()
	}
	r := cfg.Decide(authority, peer)
	switch r.Verdict {
	case egress.NotFound:
		x.inc(x.f.counters.unknown)
		x.h.SetMetadata(egress.MetadataNamespace, egress.MetaAction, "NotFound")
		x.reply(isGRPC(headers), 404, egress.GRPCUnimplemented, egress.NotFoundBody(authority), egress.DetailUnknownHost)
		return shared.HeadersStatusStop
	case egress.Reject:
		x.inc(x.f.counters.denied)
		x.setMetadata(&r)
		x.reply(isGRPC(headers), 403, egress.GRPCPermissionDenied, r.DenyBody(), egress.DetailDenied)
		return shared.HeadersStatusStop
	}
	if r.Shadow {
		x.inc(x.f.counters.shadow)
		x.h.Log(shared.LogLevelInfo, "%s", r.ShadowLog())
	}
	x.inc(x.f.counters.allowed)
	if !cfg.DenyMetadataOnly || r.Shadow {
		x.setMetadata(&r)
	}
	if cfg.FixedCluster {
		return shared.HeadersStatusContinue
	}
	headers.Set(cfg.ClusterHeader, r.Entry.Service.Cluster)
	// The route (and its cluster, from a client-sent header) was resolved
	// before this filter ran; clear it so the cluster_header route re-reads
	// our header. RefreshRouteCluster is not enough in Envoy 1.39: the
	// end-to-end test saw the client's spoofed cluster win with it.
	x.h.ClearRouteCache()
	return shared.HeadersStatusContinue
}

var textPlain = [][2]string{{"content-type", "text/plain; charset=utf-8"}}

func isGRPC(h shared.HeaderMap) bool {
	ct := h.GetOne("content-type").ToUnsafeString()
	return strings.HasPrefix(ct, "application/grpc")
}

// reply answers locally. Envoy 1.39's send_response callback passes
// grpc_status 0 to sendLocalReply, so a gRPC client would read any local
// reply as OK; gRPC requests get a trailers-only response built here
// (HTTP 200, grpc-status, the text as grpc-message) instead.
func (x *filter) reply(grpc bool, code uint32, grpcStatus int, body, detail string) {
	if grpc {
		x.h.SendResponseHeaders([][2]string{
			{":status", "200"},
			{"content-type", "application/grpc"},
			{"grpc-status", strconv.Itoa(grpcStatus)},
			{"grpc-message", egress.GRPCMessage(body)},
		}, true)
		return
	}
	x.h.SendLocalResponse(code, textPlain, []byte(body), detail)
}

// peerURISAN is the client certificate's URI SAN when the downstream
// connection is mutual TLS (the listener must require and validate client
// certificates against the mesh CA for this to mean anything).
func (x *filter) peerURISAN() string {
	if mtls, ok := x.h.GetAttributeBool(shared.AttributeIDConnectionMtls); !ok || !mtls {
		return ""
	}
	v, ok := x.h.GetAttributeString(shared.AttributeIDConnectionUriSanPeerCertificate)
	if !ok {
		return ""
	}
	return v.ToUnsafeString()
}

func (x *filter) setMetadata(r *egress.Result) {
	set := func(k, v string) { x.h.SetMetadata(egress.MetadataNamespace, k, v) }
	set(egress.MetaAction, r.ActionName())
	set(egress.MetaMES, r.Entry.Service.Name)
	set(egress.MetaPolicy, r.Decision.PolicyOrReason())
	if r.FromCertificate || r.Verdict == egress.Reject {
		set(egress.MetaSource, r.Source)
	}
	if r.Verdict == egress.Reject {
		set(egress.MetaMesh, r.Entry.Service.Mesh)
	}
}

// fail answers 500 (gRPC INTERNAL) after a panic; a second panic here is
// swallowed so nothing ever crosses into Envoy.
func (x *filter) fail(headers shared.HeaderMap, p any) shared.HeadersStatus {
	defer func() { _ = recover() }()
	x.inc(x.f.counters.errors)
	x.h.Log(shared.LogLevelError, "meshext: panic in request filter: %v", p)
	grpc := func() (g bool) {
		defer func() { _ = recover() }()
		return isGRPC(headers)
	}()
	x.reply(grpc, 500, egress.GRPCInternal, "meshext: internal filter error\n", egress.DetailError)
	return shared.HeadersStatusStop
}

// NoopFilterName registers a filter that does nothing but what every Go
// filter in this module must do per request (cthread.Tick): benchmarks use
// it to measure what a Go dynamic module costs per request (cgo crossings,
// SDK bookkeeping) apart from meshext's own work.
const NoopFilterName = "meshext-noop"

// NoopConfigFactory is registered under NoopFilterName.
type NoopConfigFactory struct{}

// Create ignores the configuration.
func (NoopConfigFactory) Create(shared.HttpFilterConfigHandle, []byte) (shared.HttpFilterFactory, error) {
	return noopFactory{}, nil
}

// CreatePerRoute is not supported.
func (NoopConfigFactory) CreatePerRoute([]byte) (any, error) {
	return nil, fmt.Errorf("meshext-noop: per-route config is not supported")
}

type noopFactory struct{}

func (noopFactory) Create(shared.HttpFilterHandle) shared.HttpFilter {
	cthread.Tick()
	return &shared.EmptyHttpFilter{}
}

func (noopFactory) OnDestroy() {}

// Allow is what an allowed request needs from Envoy when nothing else has
// to be recorded: count it (Count, with Counter) and, unless Header is
// empty, set Header to Cluster and clear the route cache.
type Allow struct {
	Counter shared.MetricID
	Count   bool
	Header  string
	Cluster string
}

// FastDecider is a filter factory whose common case is decided from the
// request's authority alone. A binding that reads the authority itself
// calls FastAllow first and builds a filter only when ok is false.
type FastDecider interface {
	FastAllow(authority string) (a Allow, ok bool)
}

var (
	_ FastDecider = (*Factory)(nil)
	_ FastDecider = noopFactory{}
)

// FastAllow decides a request that needs no client certificate and no
// decision metadata when allowed: ok is true when it is allowed and not a
// shadow denial. Anything else (a denial, an unknown host, a shadow
// denial, a config that reads the certificate or sets metadata on allows)
// is ok false, and the filter (OnRequestHeaders) decides it. It allocates
// nothing.
func (f *Factory) FastAllow(authority string) (a Allow, ok bool) {
	cfg := f.live.Current()
	if !cfg.IgnoreClientCertificates || !cfg.DenyMetadataOnly {
		return a, false
	}
	r := cfg.Decide(authority, "")
	if r.Verdict != egress.Forward || r.Shadow {
		return a, false
	}
	a.Counter, a.Count = f.counters.allowed.id, f.counters.allowed.ok
	if !cfg.FixedCluster {
		a.Header, a.Cluster = cfg.ClusterHeader, r.Entry.Service.Cluster
	}
	return a, true
}

// FastAllow allows everything and asks Envoy for nothing.
func (noopFactory) FastAllow(string) (Allow, bool) { return Allow{}, true }

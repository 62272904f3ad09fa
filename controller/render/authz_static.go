package render

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
)

// staticDecision is the authorization decided at render time for a chain
// whose caller and destination are both fixed (authzFilters). The zero
// value (no decision made: the egress, or a workload going through one)
// denies nothing.
type staticDecision struct {
	decision core.Decision
	entry    *core.Entry
	source   string // the caller's kuma.io/service
}

// denied reports a static Deny: the chain answers without a filter.
func (d staticDecision) denied() bool { return d.entry != nil && d.decision.Action == core.Deny }

// denyBody is the 403 body, the same text the meshext filter answers with.
func (d staticDecision) denyBody() string {
	res := egress.Result{Entry: d.entry, Decision: d.decision, Source: d.source}
	return res.DenyBody()
}

// staticDenyRoute answers every request of a statically denied service:
// 403 with the filter's deny body (Envoy's local reply turns it into
// trailers-only grpc-status 7 PERMISSION_DENIED, the body as grpc-message,
// for a gRPC request). No filter runs, so there is no dynamic metadata: the
// route carries the same keys as route metadata under "meshext", for
// %METADATA(ROUTE:meshext:policy)% in an access log.
func staticDenyRoute(d staticDecision) *routev3.Route {
	svc := d.entry.Service
	md := &structpb.Struct{Fields: map[string]*structpb.Value{
		egress.MetaAction: structpb.NewStringValue(string(core.Deny)),
		egress.MetaMES:    structpb.NewStringValue(svc.Name),
		egress.MetaMesh:   structpb.NewStringValue(svc.Mesh),
		egress.MetaPolicy: structpb.NewStringValue(d.decision.PolicyOrReason()),
		egress.MetaSource: structpb.NewStringValue(d.source),
	}}
	return &routev3.Route{
		Name:     "meshext:denied",
		Match:    &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action:   &routev3.Route_DirectResponse{DirectResponse: directResponse(403, d.denyBody())},
		Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{egress.MetadataNamespace: md}},
	}
}

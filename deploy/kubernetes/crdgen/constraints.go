package main

import (
	"reflect"

	r "github.com/meshext/meshext/controller/resource"
)

// The constraints of Kuma v2.14's CRD schemas (enums, required fields,
// bounds, lengths, patterns), read from its deployments/charts/kuma/crds and
// each kind's rest.yaml, written here per Go type of controller/resource,
// so every place a type is used gets them. Where meshext deliberately
// accepts more than Kuma (see README, "Kubernetes"), the rule says so.

// rule constrains the schema of one struct type.
type rule func(s *Schema)

var constraints = map[reflect.Type][]rule{}

func on(v any, rules ...rule) {
	constraints[reflect.TypeOf(v)] = append(constraints[reflect.TypeOf(v)], rules...)
}

func applyConstraints(s *Schema, t reflect.Type) {
	for _, c := range constraints[t] {
		c(s)
	}
}

func required(fields ...string) rule {
	return func(s *Schema) { s.Required = append(s.Required, fields...) }
}

// field changes the schema of one property; through arrays, the items'.
func field(name string, f func(*Schema)) rule {
	return func(s *Schema) {
		p := s.Properties[name]
		if p == nil {
			panic("crdgen: no field " + name)
		}
		f(p)
	}
}

func items(f func(*Schema)) func(*Schema) {
	return func(s *Schema) {
		if s.Items == nil {
			panic("crdgen: not an array")
		}
		f(s.Items)
	}
}

func enum(values ...any) func(*Schema) { return func(s *Schema) { s.Enum = values } }

func between(lo, hi int64) func(*Schema) {
	return func(s *Schema) { s.Minimum, s.Maximum = ptr(lo), ptr(hi) }
}

func minLength(n int64) func(*Schema) { return func(s *Schema) { s.MinLength = ptr(n) } }
func maxItems(n int64) func(*Schema)  { return func(s *Schema) { s.MaxItems = ptr(n) } }
func minItems(n int64) func(*Schema)  { return func(s *Schema) { s.MinItems = ptr(n) } }
func format(f string) func(*Schema)   { return func(s *Schema) { s.Format = f } }

func all(fs ...func(*Schema)) func(*Schema) {
	return func(s *Schema) {
		for _, f := range fs {
			f(s)
		}
	}
}

// Kuma's HTTP header name and hostname rules (Gateway API's).
var (
	headerName = all(minLength(1), func(s *Schema) {
		s.MaxLength, s.Pattern = ptr(256), "^[a-z0-9!#$%&'*+\\-.^_\\x60|~]+$"
	})
	hostnameRule = all(minLength(1), func(s *Schema) {
		s.MaxLength, s.Pattern = ptr(253), `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	})
	targetRefKinds = enum(r.RefMesh, r.RefMeshSubset, r.RefMeshGateway, r.RefMeshService, r.RefMeshExternalService,
		r.RefMeshMultiZoneService, r.RefMeshServiceSubset, r.RefMeshHTTPRoute, r.RefDataplane)
	proxyTypes = items(enum(r.ProxyTypeSidecar, r.ProxyTypeGateway))
	port       = between(1, 65535)
)

func init() {
	// MeshExternalService. Deliberately not required (the seed documents
	// both): match.port (omitted: every port) and endpoints[].port (a unix
	// socket has none).
	on(r.MeshExternalServiceSpec{}, required("match"))
	on(r.Match{},
		field("type", enum(r.MatchTypeHostnameGenerator)),
		field("protocol", enum(r.ProtocolTCP, r.ProtocolGRPC, r.ProtocolHTTP, r.ProtocolHTTP2)),
		field("port", port))
	on(r.Endpoint{}, required("address"),
		field("address", minLength(1)),
		field("port", port),
		field("priority", between(0, 128)))
	on(r.Extension{}, required("type"))
	on(r.TLSVersion{},
		field("min", enum(r.TLSAuto, r.TLS10, r.TLS11, r.TLS12, r.TLS13)),
		field("max", enum(r.TLSAuto, r.TLS10, r.TLS11, r.TLS12, r.TLS13)))
	on(r.Verification{}, field("mode", enum(r.ModeSkipSAN, r.ModeSkipCA, r.ModeSecured, r.ModeSkipAll)))
	on(r.SubjectAltName{}, required("value"), field("type", enum(r.SANExact, r.SANPrefix)))
	on(r.DataSource{}, field("inline", format("byte")))

	// HostnameGenerator.
	on(r.HostnameGeneratorSpec{}, required("template"))

	// MeshTrafficPermission.
	on(r.TargetRef{}, required("kind"), field("kind", targetRefKinds))
	on(r.TrafficPermFrom{}, required("targetRef"))
	on(r.TrafficPermConf{}, field("action", enum(r.ActionAllow, r.ActionDeny, r.ActionAllowWithShadowDeny)))
	on(r.TrafficPermRule{}, required("default"))
	on(r.StringMatch{}, required("type", "value"))
	on(r.TrafficPermMatch{},
		field("spiffeID", func(s *Schema) { enum("Exact", "Prefix")(s.Properties["type"]) }),
		field("sni", func(s *Schema) { enum("Exact")(s.Properties["type"]) }))

	// The targetRef policies' common parts.
	on(r.PolicyTargetRef{}, required("kind"), field("kind", targetRefKinds), field("proxyTypes", proxyTypes))
	on(r.PolicyBackendRef{}, required("kind"), field("kind", targetRefKinds), field("proxyTypes", proxyTypes))
	on(r.HeaderMatch{}, required("name"), field("name", headerName),
		field("type", enum(r.HeaderMatchExact, r.HeaderMatchPresent, r.HeaderMatchRegularExpression, r.HeaderMatchAbsent, r.HeaderMatchPrefix)))
	on(r.HeaderKeyValue{}, required("name", "value"), field("name", headerName))
	for _, to := range []any{r.MeshTimeoutTo{}, r.MeshRetryTo{}, r.MeshCircuitBreakerTo{}, r.MeshHealthCheckTo{}, r.MeshLoadBalancingStrategyTo{}} {
		on(to, required("targetRef"))
	}

	// MeshRetry.
	on(r.MeshRetryResetHeader{}, required("format", "name"), field("name", headerName), field("format", enum("Seconds", "UnixTimestamp")))
	on(r.MeshRetryGRPC{}, field("retryOn", items(enum("Canceled", "DeadlineExceeded", "Internal", "ResourceExhausted", "Unavailable"))))
	on(r.MeshRetryPredicate{}, required("predicate"), field("predicate", enum("OmitPreviousHosts", "OmitHostsWithTags", "OmitPreviousPriorities")))

	// MeshHealthCheck.
	on(r.HealthCheckHeaders{}, field("add", maxItems(16)), field("set", maxItems(16)))

	// MeshLoadBalancingStrategy.
	on(r.LoadBalancer{}, required("type"), field("type", enum("RoundRobin", "LeastRequest", "RingHash", "Random", "Maglev")))
	on(r.RingHash{}, field("hashFunction", enum("XXHash", "MurmurHash2")))
	on(r.HashPolicy{}, required("type"), field("type", enum("Header", "Cookie", "Connection", "SourceIP", "QueryParameter", "FilterState")))
	on(r.HashHeaderName{}, required("name"), field("name", minLength(1)))
	on(r.HashCookieConf{}, required("name"), field("name", minLength(1)))
	on(r.HashFilterStateConf{}, required("key"), field("key", minLength(1)))

	// MeshAccessLog.
	on(r.MeshAccessLogTo{}, required("default", "targetRef"))
	on(r.AccessLogBackend{}, required("type"), field("type", enum("Tcp", "File", "OpenTelemetry")))
	on(r.AccessLogFileBackend{}, required("path"), field("path", minLength(1)))
	on(r.AccessLogTCPBackend{}, required("address"), field("address", minLength(1)))
	on(r.AccessLogFormat{}, required("type"), field("type", enum("Plain", "Json")))
	on(r.AccessLogJSONKey{}, required("key", "value"))
	on(r.AccessLogOtelAttribute{}, required("key", "value"), field("key", func(s *Schema) { s.Pattern = `^[a-z]([a-z0-9]|[._][a-z0-9])*$` }))

	// MeshHTTPRoute.
	on(r.MeshHTTPRouteTo{}, required("rules", "targetRef"))
	on(r.HTTPRouteRule{}, required("default", "matches"), field("matches", minItems(1)))
	on(r.HTTPRouteMatch{}, field("method", enum("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")))
	on(r.HTTPPathMatch{}, required("type", "value"), field("value", minLength(1)),
		field("type", enum("Exact", "PathPrefix", "RegularExpression")))
	on(r.HTTPQueryParamMatch{}, required("name", "type", "value"), field("name", minLength(1)),
		field("type", enum("Exact", "RegularExpression")))
	on(r.HTTPRouteFilter{}, required("type"),
		field("type", enum("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite", "RequestMirror")))
	on(r.HTTPHeaderModifier{}, field("add", maxItems(16)), field("set", maxItems(16)), field("remove", maxItems(16)))
	on(r.HTTPRequestRedirect{}, field("hostname", hostnameRule), field("scheme", enum("http", "https")),
		field("statusCode", enum(301, 302, 303, 307, 308)))
	on(r.HTTPURLRewrite{}, field("hostname", hostnameRule))
	on(r.HTTPPathRewrite{}, required("type"), field("type", enum("ReplaceFullPath", "ReplacePrefixMatch")))
	on(r.HTTPRequestMirror{}, required("backendRef"))

	// MeshTCPRoute.
	on(r.MeshTCPRouteSpec{}, field("to", minItems(1)))
	on(r.MeshTCPRouteTo{}, required("rules", "targetRef"), field("rules", maxItems(1)))
	on(r.TCPRouteRule{}, required("default"))
}

package validate_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

// TestEveryPolicyRuleHasAGoldenCase guards the policy kinds' coverage: each
// message their validators can produce appears in a golden file.
func TestEveryPolicyRuleHasAGoldenCase(t *testing.T) {
	text := allGoldens(t)
	for _, want := range []string{
		// Kuma's targetRef rules
		"spec.targetRef.name: using name with kind Mesh is not yet supported",
		"spec.targetRef.mesh: must not be set with kind Mesh",
		"spec.targetRef.proxyTypes: must be undefined or have at least one element",
		`spec.to[0].targetRef.proxyTypes[0]: "proxyTypes" must be one of ["Sidecar", "Gateway"]`,
		"spec.targetRef.labels: either labels or name and namespace must be specified",
		"spec.targetRef.sectionName: can only be used with inbound policies",
		"spec.to[0].targetRef.name: invalid characters: must consist of lower case alphanumeric characters, '-', '.' and '_'.",
		"spec.targetRef.tags: tag name must be non-empty",
		`spec.targetRef.tags["bad key!"]: tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores`,
		`spec.targetRef.tags["empty"]: tag value must be non-empty`,
		`spec.targetRef.tags["slash"]: tag value must consist of alphanumeric characters, dots, dashes and underscores`,
		"spec.targetRef: name or labels must be set when kind is MeshService",
		"spec.targetRef.name: must be set when kind is MeshServiceSubset",
		"spec.to[1].targetRef.labels: either labels or name must be specified",
		"spec.to[2].targetRef: name or labels must be set when kind is MeshExternalService",
		"spec.to[0].targetRef.kind: value 'MeshServiceSubset' is not supported",
		"spec.to: it's not allowed to mix producer and consumer items in the same policy",
		"spec.to: it's not allowed to mix 'to' and 'from' arrays in the same policy",
		// meshext's refusals
		"meshext applies policies to MeshExternalService (outbound) traffic only: 'from' is not supported",
		"meshext applies policies to MeshExternalService (outbound) traffic only: 'rules' is not supported",
		"kind MeshService is not supported (use Mesh or MeshExternalService)",
		"kind MeshMultiZoneService is not supported (use Mesh or MeshExternalService)",
		"meshext runs no MeshGateway: a policy on kind MeshGateway would select no proxy",
		"meshext does not support a top-level targetRef of kind MeshHTTPRoute",
		// MeshTimeout
		"spec: at least one of 'from', 'to' or 'rules' has to be defined",
		"spec: fields 'to' and 'from' must be empty when 'rules' is defined",
		"spec.to[0].default: at least one timeout should be configured",
		"spec.to[1].default.idleTimeout: must not be negative when defined",
		"spec.to[2].default.connectionTimeout: must be greater than zero when defined",
		"spec.to[3].default.http: at least one timeout in this section should be configured",
		"can't be specified when top-level TargetRef is referencing MeshHTTPRoute",
		"only http.requestTimeout and http.streamIdleTimeout apply to a MeshHTTPRoute",
		`a duration must be a string such as "5s" or "1h30m", got the number 5`,
		`invalid duration "1 hour"`,
		// MeshRetry
		"spec.to[0].default: at least one of the 'tcp', 'http', 'grpc' must be specified",
		"spec.to[1].default.tcp: must not be empty",
		"spec.to[2].default.tcp.maxConnectAttempt: must be greater than 0",
		"spec.to[2].default.http.backOff: must not be empty",
		"spec.to[2].default.grpc.rateLimitedBackOff.resetHeaders: must be defined",
		"spec.to[0].default.http.retryOn[0]: unknown item 'WRONG_VALUE'",
		"spec.to[0].default.grpc.retryOn[0]: unknown item '500'",
		"rateLimitedBackOff.maxInterval: must be defined and greater than zero",
		"resetHeaders[0].name: must be defined",
		`resetHeaders[1].format: "format" must be one of ["Seconds", "UnixTimestamp"]`,
		"hostSelection[0].tags: must be defined",
		"hostSelection[1].updateFrequency: must be defined and greater than zero",
		"hostSelection[2].predicate: unknown predicate type 'IncorrectPredicateType'",
		"hostSelection[3].predicate: OmitPreviousPriorities must only be specified once",
		"must be a lower-case header name of at most 256 characters",
		"tcp retries do not apply to it",
		// MeshCircuitBreaker
		"at least one of: 'connectionLimits' or 'outlierDetection' should be configured",
		"connectionLimits.maxConnectionPools: must be greater than 0",
		"outlierDetection.baseEjectionTime: must be greater than zero when defined",
		"outlierDetection.maxEjectionPercent: must be in inclusive range [0, 100]",
		"outlierDetection.healthyPanicThreshold: must be in inclusive range [0.0, 100.0]",
		"outlierDetection.healthyPanicThreshold: string must be a valid number",
		"successRate.standardDeviationFactor: invalid number",
		"successRate.standardDeviationFactor: must be greater than 0",
		"failurePercentage.threshold: must be in inclusive range [0, 100]",
		"outlierDetection.detectors: must be defined",
		"outlierDetection.detectors: must have at least one defined: totalFailures, gatewayFailures, localOriginFailures, successRate, failurePercentage",
		`must be an integer or a string (write decimals as strings, e.g. "99.5"), got the number 99.5`,
		// MeshHealthCheck
		"spec.to[0].default: must have at least one defined: http, tcp, grpc",
		"default.unhealthyThreshold: must be greater than zero when defined",
		"default.noTrafficInterval: must be greater than zero when defined",
		"default.intervalJitterPercent: must be in inclusive range [0, 100]",
		"default.eventLogPath: must be a valid path when defined",
		"default.http.path: must be defined",
		"default.http.expectedStatuses[0]: must be in inclusive range [100, 599]",
		"default.tcp.send: must be valid base64",
		// MeshLoadBalancingStrategy
		"hashPolicies[0].header: must be defined",
		"hashPolicies[1].cookie: must be defined",
		"hashPolicies[2].connection: must be defined",
		"hashPolicies[3].queryParameter: must be defined",
		"hashPolicies[4].filterState: must be defined",
		"hashPolicies[6].cookie.path: must be an absolute path",
		"field is not allowed when targetRef.kind is MeshHTTPRoute, only hashPolicies is supported",
		"maglev.hashPolicies: hashPolicies already specified in the root level",
		"leastRequest.activeRequestBias: must be greater or equal then: 0",
		"leastRequest.activeRequestBias: string must be a valid number",
		"leastRequest.choiceCount: must be at least 2",
		"ringHash.minRingSize: must be between 1 and 8000000",
		"maglev.tableSize: must be between 1 and 5000011",
		"loadBalancer.ringHash: must not be set when type is LeastRequest",
		`loadBalancer.type: "type" must be one of ["RoundRobin", "LeastRequest", "RingHash", "Random", "Maglev"]`,
		"meshext does not support localityAwareness",
		"kind MeshExternalService is only allowed with targetRef.kind: Mesh as it is configured on the Zone Egress and shared by all clients in the mesh",
		// MeshAccessLog
		"file.path: file backend requires a valid path",
		"format.json[0].key: key cannot be empty",
		"format.json[1].value: value cannot be empty",
		"format.json[2]: is not a valid JSON object",
		"tcp.address: tcp backend requires valid address",
		"file.format.json: must not be empty",
		"tcp.format.plain: must not be empty",
		"backends[2].file: must be defined",
		"file.format.plain: must be defined",
		"openTelemetry: openTelemetry must have exactly one defined: endpoint, backendRef",
		"openTelemetry: openTelemetry must have only one type defined: endpoint, backendRef",
		"openTelemetry.endpoint: must be in host:port format, not a URL",
		"meshext does not read MeshOpenTelemetryBackend resources",
		"must be a static OpenTelemetry attribute name; placeholders are only supported in values",
		"must not use the reserved OpenTelemetry prefix 'otel.'",
		`backends[4].type: "type" must be one of ["Tcp", "File", "OpenTelemetry"]`,
		"spec.to[3].default.backends: must be defined",
		// MeshHTTPRoute
		"spec.to[1].targetRef.kind: value 'Mesh' is not supported",
		"path.value: must be an absolute path",
		"does not need a trailing slash because only a `/`-separated prefix or an entire path is matched",
		"queryParams[1].name: multiple entries for name foo",
		"headers[0].value: must not be defined",
		"rules[1].matches: must have at least one element",
		`method: "method" must be one of ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"]`,
		"filters[0].requestHeaderModifier: must be defined",
		"requestHeaderModifier.set[1].name: duplicate header name",
		"responseHeaderModifier: must have at least one defined: set, add, remove",
		"urlRewrite.path.replacePrefixMatch: can only appear if all matches match a path prefix",
		"urlRewrite.hostname: cannot be an IP address",
		"urlRewrite.hostToBackendHostname: can only be set with MeshGateway",
		"urlRewrite.hostToBackendHostname: cannot be set together with hostname",
		"requestRedirect.hostname: a lowercase RFC 1123 subdomain must consist of",
		"requestRedirect.statusCode: must be one of 301, 302, 303, 307, 308",
		"requestRedirect.path.replacePrefixMatch: must be set when type is ReplacePrefixMatch",
		"requestMirror.backendRef.name: must be set when kind is MeshServiceSubset",
		"meshext does not support RequestMirror",
		"backendRefs[1].port: must be defined with kind MeshMultiZoneService",
		"meshext routes only to MeshExternalServices: kind MeshService is not supported",
		"backendRefs[3].port: is only supported when the backendRef is a MeshService",
		"spec.to[0].hostnames: must not be defined",
		// MeshTCPRoute
		"rules[1].default.backendRefs: must be defined",
		"spec.to[1].rules: must have at most 1 item",
	} {
		assert.Contains(t, text, want, "no golden case shows this rule")
	}
}

// TestPolicyValidatorsTolerateZeroValues: hand-built policies with empty
// specs and empty nested parts never panic, and each gets a message.
func TestPolicyValidatorsTolerateZeroValues(t *testing.T) {
	meta := func(k resource.Kind) resource.Meta { return resource.Meta{Kind: k, Mesh: "default", Name: "p"} }
	empty := resource.PolicyTargetRef{}
	objs := []resource.Object{
		&resource.MeshTimeout{Meta: meta(resource.KindMeshTimeout)},
		&resource.MeshTimeout{Meta: meta(resource.KindMeshTimeout), Spec: resource.MeshTimeoutSpec{To: []resource.MeshTimeoutTo{{Default: resource.MeshTimeoutConf{HTTP: &resource.MeshTimeoutHTTP{}}}}}},
		&resource.MeshRetry{Meta: meta(resource.KindMeshRetry), Spec: resource.MeshRetrySpec{TargetRef: &empty, To: []resource.MeshRetryTo{{Default: resource.MeshRetryConf{
			HTTP: &resource.MeshRetryHTTP{RateLimitedBackOff: &resource.MeshRetryRateLimitedBackOff{}, HostSelection: &[]resource.MeshRetryPredicate{{}}}}}}}},
		&resource.MeshCircuitBreaker{Meta: meta(resource.KindMeshCircuitBreaker), Spec: resource.MeshCircuitBreakerSpec{To: []resource.MeshCircuitBreakerTo{{Default: resource.MeshCircuitBreakerConf{
			OutlierDetection: &resource.OutlierDetection{Detectors: &resource.Detectors{SuccessRate: &resource.SuccessRateDetector{}}}}}}}},
		&resource.MeshHealthCheck{Meta: meta(resource.KindMeshHealthCheck), Spec: resource.MeshHealthCheckSpec{To: []resource.MeshHealthCheckTo{{}}}},
		&resource.MeshLoadBalancingStrategy{Meta: meta(resource.KindMeshLoadBalancingStrategy), Spec: resource.MeshLoadBalancingStrategySpec{To: []resource.MeshLoadBalancingStrategyTo{{
			Default: resource.MeshLoadBalancingStrategyConf{LoadBalancer: &resource.LoadBalancer{}, HashPolicies: &[]resource.HashPolicy{{}}}}}}},
		&resource.MeshAccessLog{Meta: meta(resource.KindMeshAccessLog), Spec: resource.MeshAccessLogSpec{To: []resource.MeshAccessLogTo{{Default: resource.MeshAccessLogConf{
			Backends: &[]resource.AccessLogBackend{{}, {Type: resource.BackendFile, File: &resource.AccessLogFileBackend{Format: &resource.AccessLogFormat{}}}}}}}}},
		&resource.MeshHTTPRoute{Meta: meta(resource.KindMeshHTTPRoute), Spec: resource.MeshHTTPRouteSpec{To: []resource.MeshHTTPRouteTo{{Rules: []resource.HTTPRouteRule{{
			Matches: []resource.HTTPRouteMatch{{Path: &resource.HTTPPathMatch{}, QueryParams: &[]resource.HTTPQueryParamMatch{{}}, Headers: &[]resource.HeaderMatch{{}}}},
			Default: resource.HTTPRouteConf{Filters: &[]resource.HTTPRouteFilter{{}, {Type: resource.FilterRequestMirror, RequestMirror: &resource.HTTPRequestMirror{}},
				{Type: resource.FilterURLRewrite, URLRewrite: &resource.HTTPURLRewrite{Path: &resource.HTTPPathRewrite{}}}}, BackendRefs: &[]resource.PolicyBackendRef{{}}}}}}}}},
		&resource.MeshTCPRoute{Meta: meta(resource.KindMeshTCPRoute), Spec: resource.MeshTCPRouteSpec{To: []resource.MeshTCPRouteTo{{Rules: []resource.TCPRouteRule{{}}}}}},
	}
	for _, o := range objs {
		errs := validate.Object(o, nil)
		assert.NotEmpty(t, errs, "%s: a zero value has something to say", o.GetMeta().Kind)
		for _, e := range errs {
			assert.NotEmpty(t, e.Message)
			assert.NotEmpty(t, e.Field)
		}
	}
}

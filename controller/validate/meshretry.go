package validate

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/meshext/meshext/controller/resource"
)

var (
	httpRetryOn = []string{"5xx", "GatewayError", "Reset", "Retriable4xx", "ConnectFailure", "EnvoyRatelimited",
		"RefusedStream", "Http3PostConnectFailure", "HttpMethodConnect", "HttpMethodDelete", "HttpMethodGet",
		"HttpMethodHead", "HttpMethodOptions", "HttpMethodPatch", "HttpMethodPost", "HttpMethodPut", "HttpMethodTrace"}
	grpcRetryOn      = []string{"Canceled", "DeadlineExceeded", "Internal", "ResourceExhausted", "Unavailable"}
	rateLimitFormats = []string{resource.RateLimitFormatSeconds, resource.RateLimitFormatUnixTimestamp}
)

// meshRetry applies Kuma v2.14's MeshRetry validator in its order. Kuma
// roots the conf's violations at "default.conf"; meshext names the real
// field ("default.http.backOff"), as the YAML spells it.
func meshRetry(v *violations, r *resource.MeshRetry) {
	s := &r.Spec
	top := topRef(v, s.TargetRef, roleOpts(policyRole(v, r), topKindsSystemRoute))
	for i := range s.To {
		at := fmt.Sprintf("spec.to[%d]", i)
		to := &s.To[i]
		toRef(v, at, &to.TargetRef, toKindsUnder(top, toKindsAll, toKindsGatewayRoute, resource.RefMeshHTTPRoute, resource.RefMeshGateway))
		meshRetryDefault(v, at+".default", &to.Default)
		if to.TargetRef.Kind == resource.RefMeshHTTPRoute && to.Default.TCP != nil {
			v.add(at+".default.tcp", "a MeshHTTPRoute carries HTTP and gRPC requests: tcp retries do not apply to it")
		}
	}
}

func meshRetryDefault(v *violations, at string, c *resource.MeshRetryConf) {
	if c.TCP == nil && c.HTTP == nil && c.GRPC == nil {
		v.add(at, "at least one of the 'tcp', 'http', 'grpc' must be specified")
	}
	if t := c.TCP; t != nil {
		if t.MaxConnectAttempt == nil {
			v.add(at+".tcp", msgMustNotBeEmpty)
		} else if *t.MaxConnectAttempt == 0 {
			v.add(at+".tcp.maxConnectAttempt", msgGreaterThanZero)
		}
	}
	if h := c.HTTP; h != nil {
		at := at + ".http"
		if h.NumRetries == nil && h.PerTryTimeout == nil && h.BackOff == nil && h.RetryOn == nil &&
			h.RetriableRequestHeaders == nil && h.RetriableResponseHeaders == nil && h.RateLimitedBackOff == nil && h.HostSelection == nil {
			v.add(at, msgMustNotBeEmpty)
		}
		retryBackOff(v, at, h.BackOff)
		retryRateLimited(v, at, h.RateLimitedBackOff)
		if h.RetryOn != nil {
			for i, ro := range *h.RetryOn {
				if slices.Contains(httpRetryOn, ro) {
					continue
				}
				// Kuma: any status code net/http knows a text for.
				if n, err := strconv.Atoi(ro); err != nil || http.StatusText(n) == "" {
					v.add(fmt.Sprintf("%s.retryOn[%d]", at, i), "unknown item '%s'", ro)
				}
			}
		}
		if h.HostSelection != nil {
			prioritySet := false
			for i, p := range *h.HostSelection {
				pat := fmt.Sprintf("%s.hostSelection[%d]", at, i)
				switch p.Predicate {
				case resource.PredicateOmitHostsWithTags:
					if p.Tags == nil {
						v.add(pat+".tags", msgMustBeDefined)
					}
				case resource.PredicateOmitPreviousPriorities:
					if prioritySet {
						v.add(pat+".predicate", "%s must only be specified once", p.Predicate)
					}
					if p.UpdateFrequency == nil || *p.UpdateFrequency <= 0 {
						v.add(pat+".updateFrequency", msgDefinedAndGT0)
					}
					prioritySet = true
				case resource.PredicateOmitPreviousHosts:
				default:
					v.add(pat+".predicate", "unknown predicate type '%s'", p.Predicate)
				}
			}
		}
		// Kuma's schema: header matchers' types and names.
		for _, hs := range []struct {
			name string
			list *[]resource.HeaderMatch
		}{{"retriableResponseHeaders", h.RetriableResponseHeaders}, {"retriableRequestHeaders", h.RetriableRequestHeaders}} {
			if hs.list == nil {
				continue
			}
			for i, m := range *hs.list {
				headerMatchSchema(v, fmt.Sprintf("%s.%s[%d]", at, hs.name, i), m)
			}
		}
	}
	if g := c.GRPC; g != nil {
		at := at + ".grpc"
		if g.NumRetries == nil && g.PerTryTimeout == nil && g.BackOff == nil && g.RetryOn == nil && g.RateLimitedBackOff == nil {
			v.add(at, msgMustNotBeEmpty)
		}
		retryBackOff(v, at, g.BackOff)
		retryRateLimited(v, at, g.RateLimitedBackOff)
		if g.RetryOn != nil {
			for i, ro := range *g.RetryOn {
				if !slices.Contains(grpcRetryOn, ro) {
					v.add(fmt.Sprintf("%s.retryOn[%d]", at, i), "unknown item '%s'", ro)
				}
			}
		}
	}
}

func retryBackOff(v *violations, at string, b *resource.MeshRetryBackOff) {
	if b != nil && b.BaseInterval == nil && b.MaxInterval == nil {
		v.add(at+".backOff", msgMustNotBeEmpty)
	}
}

func retryRateLimited(v *violations, at string, r *resource.MeshRetryRateLimitedBackOff) {
	if r == nil {
		return
	}
	at += ".rateLimitedBackOff"
	if r.MaxInterval != nil && r.MaxInterval.Duration <= 0 {
		v.add(at+".maxInterval", msgDefinedAndGT0)
	}
	if r.ResetHeaders == nil {
		v.add(at+".resetHeaders", msgMustBeDefined)
		return
	}
	for i, h := range *r.ResetHeaders {
		hat := fmt.Sprintf("%s.resetHeaders[%d]", at, i)
		if h.Name == "" {
			v.add(hat+".name", msgMustBeDefined)
		} else {
			headerName(v, hat+".name", h.Name)
		}
		if !slices.Contains(rateLimitFormats, h.Format) { // Kuma's schema enum
			v.add(hat+".format", "%s", mustBeOneOf("format", rateLimitFormats...))
		}
	}
}

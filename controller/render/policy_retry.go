package render

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	previousprioritiesv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/priority/previous_priorities/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/resource"
)

// Kuma's retryOn when a MeshRetry names none (plugin/xds/configurer.go).
const (
	httpRetryOnDefault          = "gateway-error,connect-failure,refused-stream"
	grpcRetryOnDefault          = "cancelled,connect-failure,gateway-error,refused-stream,reset,resource-exhausted,unavailable"
	retryOnRetriableStatusCodes = "retriable-status-codes"
)

// Kuma's retryOn names to Envoy's.
var (
	httpRetryOn = map[string]string{
		"5xx": "5xx", "GatewayError": "gateway-error", "Reset": "reset", "Retriable4xx": "retriable-4xx",
		"ConnectFailure": "connect-failure", "EnvoyRatelimited": "envoy-ratelimited", "RefusedStream": "refused-stream",
		"Http3PostConnectFailure": "http3-post-connect-failure",
	}
	// Kuma maps Canceled to "canceled", which Envoy does not know; Envoy's
	// name is "cancelled".
	grpcRetryOn = map[string]string{
		"Canceled": "cancelled", "DeadlineExceeded": "deadline-exceeded", "Internal": "internal",
		"ResourceExhausted": "resource-exhausted", "Unavailable": "unavailable",
	}
)

// tcpProxyRetry is MeshRetry on a tcp_proxy: tcp.maxConnectAttempt.
func tcpProxyRetry(conf *resource.MeshRetryConf, tp *tcpproxyv3.TcpProxy) {
	if conf.TCP != nil && conf.TCP.MaxConnectAttempt != nil {
		tp.MaxConnectAttempts = wrapperspb.UInt32(*conf.TCP.MaxConnectAttempt)
	}
}

// retryPolicy is MeshRetry on a route (Kuma's GetRouteRetryConfig): the
// grpc part for gRPC services, the http part for the others. Kuma renders
// no retries for http2 services; meshext gives them the http part. nil
// means no retries (also numRetries: 0).
func retryPolicy(conf *resource.MeshRetryConf, protocol string) (*routev3.RetryPolicy, error) {
	if protocol == resource.ProtocolGRPC {
		return grpcRetryPolicy(conf.GRPC)
	}
	return httpRetryPolicy(conf.HTTP)
}

func httpRetryPolicy(h *resource.MeshRetryHTTP) (*routev3.RetryPolicy, error) {
	if h == nil || (h.NumRetries != nil && *h.NumRetries == 0) {
		return nil, nil
	}
	p := &routev3.RetryPolicy{RetryOn: httpRetryOnDefault}
	retryCommon(p, h.NumRetries, h.PerTryTimeout, h.BackOff, h.RateLimitedBackOff)
	if h.RetryOn != nil {
		var on []string
		for _, item := range *h.RetryOn {
			switch n, err := strconv.Atoi(item); {
			case err == nil && http.StatusText(n) != "":
				p.RetriableStatusCodes = append(p.RetriableStatusCodes, uint32(n))
			case strings.HasPrefix(item, "HttpMethod"):
				p.RetriableRequestHeaders = append(p.RetriableRequestHeaders, &routev3.HeaderMatcher{
					Name: ":method", HeaderMatchSpecifier: exactHeader(strings.ToUpper(strings.TrimPrefix(item, "HttpMethod"))),
				})
			default:
				on = append(on, httpRetryOn[item])
			}
		}
		if len(on) > 0 {
			p.RetryOn = strings.Join(on, ",")
		}
		if len(p.RetriableStatusCodes) > 0 && !slices.Contains(strings.Split(p.RetryOn, ","), retryOnRetriableStatusCodes) {
			p.RetryOn += "," + retryOnRetriableStatusCodes
		}
	}
	if h.RetriableRequestHeaders != nil {
		for _, m := range *h.RetriableRequestHeaders {
			p.RetriableRequestHeaders = append(p.RetriableRequestHeaders, headerMatcher(m))
		}
	}
	if h.RetriableResponseHeaders != nil {
		for _, m := range *h.RetriableResponseHeaders {
			p.RetriableHeaders = append(p.RetriableHeaders, headerMatcher(m))
		}
	}
	if h.HostSelection != nil {
		for _, hs := range *h.HostSelection {
			switch hs.Predicate {
			case resource.PredicateOmitPreviousHosts:
				a, err := pack(&previoushostsv3.PreviousHostsPredicate{})
				if err != nil {
					return nil, err
				}
				p.RetryHostPredicate = append(p.RetryHostPredicate, &routev3.RetryPolicy_RetryHostPredicate{
					Name: "envoy.retry_host_predicates.previous_hosts", ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: a},
				})
			case resource.PredicateOmitPreviousPriorities:
				freq := int32(2)
				if hs.UpdateFrequency != nil {
					freq = *hs.UpdateFrequency
				}
				a, err := pack(&previousprioritiesv3.PreviousPrioritiesConfig{UpdateFrequency: freq})
				if err != nil {
					return nil, err
				}
				p.RetryPriority = &routev3.RetryPolicy_RetryPriority{
					Name: "envoy.retry_priorities.previous_priorities", ConfigType: &routev3.RetryPolicy_RetryPriority_TypedConfig{TypedConfig: a},
				}
			case resource.PredicateOmitHostsWithTags:
				// A MeshExternalService's endpoints carry no tags: no host
				// ever matches, so the predicate would omit nothing.
			}
		}
	}
	if h.HostSelectionMaxAttempts != nil {
		p.HostSelectionRetryMaxAttempts = *h.HostSelectionMaxAttempts
	}
	return p, nil
}

func grpcRetryPolicy(g *resource.MeshRetryGRPC) (*routev3.RetryPolicy, error) {
	if g == nil || (g.NumRetries != nil && *g.NumRetries == 0) {
		return nil, nil
	}
	p := &routev3.RetryPolicy{RetryOn: grpcRetryOnDefault}
	retryCommon(p, g.NumRetries, g.PerTryTimeout, g.BackOff, g.RateLimitedBackOff)
	if g.RetryOn != nil && len(*g.RetryOn) > 0 {
		var on []string
		for _, item := range *g.RetryOn {
			on = append(on, grpcRetryOn[item])
		}
		p.RetryOn = strings.Join(on, ",")
	}
	return p, nil
}

// retryCommon sets what the http and grpc parts share.
func retryCommon(p *routev3.RetryPolicy, num *uint32, perTry *resource.Duration, backOff *resource.MeshRetryBackOff,
	limited *resource.MeshRetryRateLimitedBackOff) {
	if num != nil {
		p.NumRetries = wrapperspb.UInt32(*num)
	}
	if perTry != nil {
		p.PerTryTimeout = durationpb.New(perTry.Duration)
	}
	if backOff != nil {
		b := &routev3.RetryPolicy_RetryBackOff{}
		if backOff.BaseInterval != nil {
			b.BaseInterval = durationpb.New(backOff.BaseInterval.Duration)
		} else {
			// Envoy needs one; 25 ms is Kuma's (and Envoy's) default.
			b.BaseInterval = durationpb.New(25 * time.Millisecond)
		}
		if backOff.MaxInterval != nil {
			b.MaxInterval = durationpb.New(backOff.MaxInterval.Duration)
		}
		p.RetryBackOff = b
	}
	if limited != nil {
		rl := &routev3.RetryPolicy_RateLimitedRetryBackOff{}
		if limited.ResetHeaders != nil {
			for _, h := range *limited.ResetHeaders {
				f := routev3.RetryPolicy_SECONDS
				if h.Format == resource.RateLimitFormatUnixTimestamp {
					f = routev3.RetryPolicy_UNIX_TIMESTAMP
				}
				rl.ResetHeaders = append(rl.ResetHeaders, &routev3.RetryPolicy_ResetHeader{Name: h.Name, Format: f})
			}
		}
		if limited.MaxInterval != nil {
			rl.MaxInterval = durationpb.New(limited.MaxInterval.Duration)
		}
		p.RateLimitedRetryBackOff = rl
	}
}

package render

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/resource"
)

// configureCircuitBreaker is MeshCircuitBreaker, as Kuma's configurer
// (v2.14): connection limits on the default-priority thresholds (with
// track_remaining), and an outlier detection that replaces meshext's
// default one (F11) whenever the policy sets outlierDetection; disabled:
// true leaves the cluster without any.
func configureCircuitBreaker(conf *resource.MeshCircuitBreakerConf, c *clusterv3.Cluster) error {
	th := defaultThresholds(c)
	th.TrackRemaining = true
	if l := conf.ConnectionLimits; l != nil {
		set := func(dst **wrapperspb.UInt32Value, v *uint32) {
			if v != nil {
				*dst = wrapperspb.UInt32(*v)
			}
		}
		set(&th.MaxConnectionPools, l.MaxConnectionPools)
		set(&th.MaxConnections, l.MaxConnections)
		set(&th.MaxPendingRequests, l.MaxPendingRequests)
		set(&th.MaxRetries, l.MaxRetries)
		set(&th.MaxRequests, l.MaxRequests)
	}
	od := conf.OutlierDetection
	if od == nil {
		return nil
	}
	if od.Disabled != nil && *od.Disabled {
		c.OutlierDetection = nil
		return nil
	}
	o := &clusterv3.OutlierDetection{}
	if od.Interval != nil {
		o.Interval = durationpb.New(od.Interval.Duration)
	}
	if od.BaseEjectionTime != nil {
		o.BaseEjectionTime = durationpb.New(od.BaseEjectionTime.Duration)
	}
	if od.SplitExternalAndLocalErrors != nil {
		o.SplitExternalLocalOriginErrors = *od.SplitExternalAndLocalErrors
	}
	if od.MaxEjectionPercent != nil {
		o.MaxEjectionPercent = wrapperspb.UInt32(*od.MaxEjectionPercent)
	}
	d := od.Detectors
	if d == nil {
		d = &resource.Detectors{}
	}
	// Each detector is enforced only when configured (Kuma sets the others'
	// enforcing_* to 0, since Envoy enforces several by default).
	consecutive := func(det *resource.ConsecutiveDetector, n **wrapperspb.UInt32Value, enforcing **wrapperspb.UInt32Value) {
		if det == nil || det.Consecutive == nil {
			*enforcing = wrapperspb.UInt32(0)
			return
		}
		*enforcing = wrapperspb.UInt32(100)
		*n = wrapperspb.UInt32(*det.Consecutive)
	}
	consecutive(d.TotalFailures, &o.Consecutive_5Xx, &o.EnforcingConsecutive_5Xx)
	consecutive(d.LocalOriginFailures, &o.ConsecutiveLocalOriginFailure, &o.EnforcingConsecutiveLocalOriginFailure)
	consecutive(d.GatewayFailures, &o.ConsecutiveGatewayFailure, &o.EnforcingConsecutiveGatewayFailure)
	if sr := d.SuccessRate; sr != nil {
		o.EnforcingSuccessRate, o.EnforcingLocalOriginSuccessRate = wrapperspb.UInt32(100), wrapperspb.UInt32(100)
		if sr.MinimumHosts != nil {
			o.SuccessRateMinimumHosts = wrapperspb.UInt32(*sr.MinimumHosts)
		}
		if sr.RequestVolume != nil {
			o.SuccessRateRequestVolume = wrapperspb.UInt32(*sr.RequestVolume)
		}
		if sr.StandardDeviationFactor != nil {
			f, err := sr.StandardDeviationFactor.Float()
			if err != nil {
				return fmt.Errorf("outlierDetection.detectors.successRate.standardDeviationFactor: %w", err)
			}
			// Envoy's factor is in thousandths.
			o.SuccessRateStdevFactor = wrapperspb.UInt32(uint32(f * 1000))
		}
	} else if od.Detectors != nil {
		o.EnforcingSuccessRate, o.EnforcingLocalOriginSuccessRate = wrapperspb.UInt32(0), wrapperspb.UInt32(0)
	}
	if fp := d.FailurePercentage; fp != nil {
		o.EnforcingFailurePercentage, o.EnforcingFailurePercentageLocalOrigin = wrapperspb.UInt32(100), wrapperspb.UInt32(100)
		if fp.MinimumHosts != nil {
			o.FailurePercentageMinimumHosts = wrapperspb.UInt32(*fp.MinimumHosts)
		}
		if fp.RequestVolume != nil {
			o.FailurePercentageRequestVolume = wrapperspb.UInt32(*fp.RequestVolume)
		}
		if fp.Threshold != nil {
			o.FailurePercentageThreshold = wrapperspb.UInt32(*fp.Threshold)
		}
	} else if od.Detectors != nil {
		o.EnforcingFailurePercentage, o.EnforcingFailurePercentageLocalOrigin = wrapperspb.UInt32(0), wrapperspb.UInt32(0)
	}
	c.OutlierDetection = o
	if od.HealthyPanicThreshold != nil {
		p, err := percent(*od.HealthyPanicThreshold)
		if err != nil {
			return fmt.Errorf("outlierDetection.healthyPanicThreshold: %w", err)
		}
		commonLb(c).HealthyPanicThreshold = p
	}
	return nil
}

// defaultThresholds finds or adds the DEFAULT-priority thresholds.
func defaultThresholds(c *clusterv3.Cluster) *clusterv3.CircuitBreakers_Thresholds {
	if c.CircuitBreakers == nil {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{}
	}
	for _, t := range c.CircuitBreakers.Thresholds {
		if t != nil && t.Priority == corev3.RoutingPriority_DEFAULT {
			return t
		}
	}
	t := &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
	c.CircuitBreakers.Thresholds = append(c.CircuitBreakers.Thresholds, t)
	return t
}

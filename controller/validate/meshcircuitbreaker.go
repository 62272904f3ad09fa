package validate

import (
	"fmt"

	"github.com/meshext/meshext/controller/resource"
)

// meshCircuitBreaker applies Kuma v2.14's MeshCircuitBreaker validator in
// its order, then refuses the inbound parts (from, rules).
func meshCircuitBreaker(v *violations, r *resource.MeshCircuitBreaker) {
	s := &r.Spec
	policyRole(v, r)
	// Kuma allows the same top-level kinds whatever the role.
	topRef(v, s.TargetRef, refOpts{kinds: topKindsGateway, gatewayListenerTagsAllowed: true,
		inbound: nonEmptyList(s.From) || nonEmptyList(s.Rules)})
	nTo, nFrom, nRules := len(s.To), sliceLen(s.From), sliceLen(s.Rules)
	if nRules == 0 && nTo == 0 && nFrom == 0 {
		v.add("spec", "at least one of 'from', 'to' or 'rules' has to be defined")
	}
	if nRules > 0 && (nTo > 0 || nFrom > 0) {
		v.add("spec", "fields 'to' and 'from' must be empty when 'rules' is defined")
	}
	meshextInbound(v, s.From, s.Rules)
	for i := range s.To {
		at := fmt.Sprintf("spec.to[%d]", i)
		to := &s.To[i]
		toRef(v, at, &to.TargetRef, refOpts{kinds: toKindsDestinations})
		circuitBreakerDefault(v, at+".default", &to.Default)
	}
}

func circuitBreakerDefault(v *violations, at string, c *resource.MeshCircuitBreakerConf) {
	if c.ConnectionLimits == nil && c.OutlierDetection == nil {
		v.add(at, "at least one of: 'connectionLimits' or 'outlierDetection' should be configured")
		return
	}
	if l := c.ConnectionLimits; l != nil {
		at := at + ".connectionLimits"
		uintGT0(v, at+".maxConnections", l.MaxConnections)
		uintGT0(v, at+".maxConnectionPools", l.MaxConnectionPools)
		uintGT0(v, at+".maxPendingRequests", l.MaxPendingRequests)
		uintGT0(v, at+".maxRetries", l.MaxRetries)
		uintGT0(v, at+".maxRequests", l.MaxRequests)
	}
	od := c.OutlierDetection
	if od == nil {
		return
	}
	at += ".outlierDetection"
	durationGT0(v, at+".interval", od.Interval)
	durationGT0(v, at+".baseEjectionTime", od.BaseEjectionTime)
	uintPercent(v, at+".maxEjectionPercent", od.MaxEjectionPercent)
	percentOrNil(v, at+".healthyPanicThreshold", od.HealthyPanicThreshold)
	d := od.Detectors
	at += ".detectors"
	if d == nil {
		v.add(at, msgMustBeDefined)
		return
	}
	if d.TotalFailures == nil && d.GatewayFailures == nil && d.LocalOriginFailures == nil && d.SuccessRate == nil && d.FailurePercentage == nil {
		v.add(at, "must have at least one defined: totalFailures, gatewayFailures, localOriginFailures, successRate, failurePercentage")
		return
	}
	if d.TotalFailures != nil {
		uintGT0(v, at+".totalFailures.consecutive", d.TotalFailures.Consecutive)
	}
	if d.GatewayFailures != nil {
		uintGT0(v, at+".gatewayFailures.consecutive", d.GatewayFailures.Consecutive)
	}
	if d.LocalOriginFailures != nil {
		uintGT0(v, at+".localOriginFailures.consecutive", d.LocalOriginFailures.Consecutive)
	}
	if sr := d.SuccessRate; sr != nil {
		uintGT0(v, at+".successRate.minimumHosts", sr.MinimumHosts)
		uintGT0(v, at+".successRate.requestVolume", sr.RequestVolume)
		if f := sr.StandardDeviationFactor; f != nil {
			if n, err := f.Float(); err != nil {
				v.add(at+".successRate.standardDeviationFactor", "invalid number")
			} else if n <= 0 {
				v.add(at+".successRate.standardDeviationFactor", msgGreaterThanZero)
			}
		}
	}
	if fp := d.FailurePercentage; fp != nil {
		uintGT0(v, at+".failurePercentage.minimumHosts", fp.MinimumHosts)
		uintGT0(v, at+".failurePercentage.requestVolume", fp.RequestVolume)
		uintPercent(v, at+".failurePercentage.threshold", fp.Threshold)
	}
}

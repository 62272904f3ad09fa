package validate

import (
	"encoding/base64"
	"fmt"

	"github.com/meshext/meshext/controller/resource"
)

// meshHealthCheck applies Kuma v2.14's MeshHealthCheck validator in its order.
func meshHealthCheck(v *violations, r *resource.MeshHealthCheck) {
	s := &r.Spec
	policyRole(v, r)
	topRef(v, s.TargetRef, refOpts{kinds: topKindsGateway, gatewayListenerTagsAllowed: true})
	for i := range s.To {
		at := fmt.Sprintf("spec.to[%d]", i)
		to := &s.To[i]
		toRef(v, at, &to.TargetRef, refOpts{kinds: toKindsDestinations})
		healthCheckDefault(v, at+".default", &to.Default)
	}
}

func healthCheckDefault(v *violations, at string, c *resource.MeshHealthCheckConf) {
	durationGT0(v, at+".interval", c.Interval)
	durationGT0(v, at+".timeout", c.Timeout)
	int32GT0(v, at+".unhealthyThreshold", c.UnhealthyThreshold)
	int32GT0(v, at+".healthyThreshold", c.HealthyThreshold)
	durationGT0(v, at+".initialJitter", c.InitialJitter)
	durationGT0(v, at+".intervalJitter", c.IntervalJitter)
	if p := c.IntervalJitterPercent; p != nil && (*p < 0 || *p > 100) {
		v.add(at+".intervalJitterPercent", msgUintPercentRange)
	}
	percentOrNil(v, at+".healthyPanicThreshold", c.HealthyPanicThreshold)
	durationGT0(v, at+".noTrafficInterval", c.NoTrafficInterval)
	if p := c.EventLogPath; p != nil && !unixPathRE.MatchString(*p) {
		v.add(at+".eventLogPath", msgValidPath)
	}
	if h := c.HTTP; h != nil {
		if h.Path != nil && *h.Path == "" {
			v.add(at+".http.path", msgMustBeDefined)
		}
		if h.ExpectedStatuses != nil {
			for i, st := range *h.ExpectedStatuses {
				if st < 100 || st >= 600 {
					v.add(fmt.Sprintf("%s.http.expectedStatuses[%d]", at, i), "must be in inclusive range [100, 599]")
				}
			}
		}
		// Kuma's schema: header names of requestHeadersToAdd.
		if hs := h.RequestHeadersToAdd; hs != nil {
			for _, l := range []struct {
				name string
				kv   *[]resource.HeaderKeyValue
			}{{"set", hs.Set}, {"add", hs.Add}} {
				if l.kv == nil {
					continue
				}
				for i, kv := range *l.kv {
					headerName(v, fmt.Sprintf("%s.http.requestHeadersToAdd.%s[%d].name", at, l.name, i), kv.Name)
				}
			}
		}
	}
	// meshext: Envoy needs the tcp payloads as base64 (Kuma fails at render time).
	if t := c.TCP; t != nil {
		if t.Send != nil {
			base64Field(v, at+".tcp.send", *t.Send)
		}
		if t.Receive != nil {
			for i, b := range *t.Receive {
				base64Field(v, fmt.Sprintf("%s.tcp.receive[%d]", at, i), b)
			}
		}
	}
	if c.HTTP == nil && c.TCP == nil && c.GRPC == nil {
		v.add(at, "must have at least one defined: http, tcp, grpc")
	}
}

func base64Field(v *violations, at, s string) {
	if _, err := base64.StdEncoding.DecodeString(s); err != nil {
		v.add(at, "must be valid base64: %v", err)
	}
}

func int32GT0(v *violations, at string, n *int32) {
	if n != nil && *n <= 0 {
		v.add(at, msgWhenDefinedGT0)
	}
}

package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
)

// skipDefaultsUsage documents --skip-default-policies (inspect, render,
// run, validate).
const skipDefaultsUsage = "Kuma default policies not to add to any mesh: a comma-separated list of " +
	"MeshTimeout, MeshCircuitBreaker, MeshRetry, or * for all (each Mesh's skipCreatingInitialPolicies also applies)"

// parseSkipDefaults checks a --skip-default-policies value.
func parseSkipDefaults(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if _, ok := policy.DefaultNames[resource.Kind(k)]; !ok && k != "*" {
			return nil, fmt.Errorf("--skip-default-policies: %q is not a default policy kind (want MeshTimeout, MeshCircuitBreaker, MeshRetry or *)", k)
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out, nil
}

// policiesNote heads the effective policies in inspect's output.
const policiesNote = "effective values, each with the policy that set it, as rendered into this proxy's Envoy config"

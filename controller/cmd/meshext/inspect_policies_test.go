package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/controller/ipam"
)

const inspectPolicies = "testdata/inspect/policies.yaml"

// TestInspectPolicies: for each MeshExternalService and each proxy, inspect
// shows every effective policy value and the policy that set it, grouping
// proxies with the same result; --skip-default-policies drops Kuma's
// defaults; a bad kind is a usage error.
func TestInspectPolicies(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	out, errOut, code := runInspectTest(t, inspectPolicies, "--skip-default-policies", "MeshCircuitBreaker")
	require.Equal(t, 0, code, errOut)
	inspectGolden(t, "policies.table.golden", out)

	out, errOut, code = runInspectTest(t, "-o", "json", inspectPolicies, "--skip-default-policies", "*")
	require.Equal(t, 0, code, errOut)
	var v struct {
		Services []struct {
			Name     string
			Policies []struct {
				Proxies   []string
				Effective struct {
					Confs map[string]struct {
						Fields []struct {
							Path   string
							Value  any
							Origin struct{ Kind, Name, Source string }
						}
					}
				}
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	require.Len(t, v.Services, 1)
	groups := v.Services[0].Policies
	require.Len(t, groups, 2, "web-1 and web-3 share their effective policies, web-2 differs")
	assert.Equal(t, []string{"default.web-1", "default.web-3"}, groups[0].Proxies)
	assert.Equal(t, []string{"default.web-2"}, groups[1].Proxies)
	timeout := groups[1].Effective.Confs["MeshTimeout"].Fields
	require.Len(t, timeout, 1, "no mesh-timeout-all-default with --skip-default-policies '*'")
	assert.Equal(t, "http.requestTimeout", timeout[0].Path)
	assert.Equal(t, "5s", timeout[0].Value)
	assert.Equal(t, "httpbin-timeouts", timeout[0].Origin.Name)
	assert.Equal(t, inspectPolicies+":43", timeout[0].Origin.Source)
	assert.Contains(t, groups[1].Effective.Confs, "MeshRetry")
	assert.NotContains(t, groups[0].Effective.Confs, "MeshRetry", "v2-retries selects version v2 only")

	_, errOut, code = runInspectTest(t, inspectPolicies, "--skip-default-policies", "MeshTimeout,Bogus")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `"Bogus" is not a default policy kind`)
	for _, main := range []func([]string) int{
		func(a []string) int { return validateMain(a, &strings.Builder{}, &strings.Builder{}) },
		func(a []string) int {
			return renderMain(append(a, "--out", t.TempDir()), &strings.Builder{}, &strings.Builder{})
		},
	} {
		assert.Equal(t, 2, main([]string{"--skip-default-policies", "Bogus", inspectPolicies}))
	}
	var stdout strings.Builder
	require.Equal(t, 0, validateMain([]string{"--skip-default-policies", "MeshRetry", inspectPolicies}, &stdout, &strings.Builder{}))
	assert.Equal(t, inspectPolicies+": 7 resources valid\nplus Kuma's default policies: MeshTimeout default/mesh-timeout-all-default, "+
		"MeshCircuitBreaker default/mesh-circuit-breaker-all-default\n", stdout.String())
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshext/meshext/controller/names"
)

// Variant (d) is (c) with the meshext HTTP filter (libmeshext.so, stock
// Envoy's envoy.filters.http.dynamic_modules) before the router of the
// outbound listener. Until render inserts the filter itself, the harness
// inserts it into the rendered config, with the decision config render
// would give it: this Dataplane as source, the one MES, a mesh-wide allow.

const dynamicModuleFilter = "envoy.filters.http.dynamic_modules"

// benchCluster is the rendered cluster of the benchmark's MES (render.go:
// Kubernetes style in kuma-system, zone "default", match.port = port).
func benchCluster(name string, port int) string {
	return names.LegacyDestination("default", name, "kuma-system", "default", names.ExtSvcShortName, uint32(port))
}

// filterConfig is the plugin's JSON (egress.FilterConfig) for one MES.
func filterConfig(proto, listener string, port int) ([]byte, error) {
	name := "bench-" + proto
	cfg := map[string]any{
		"source":   map[string]any{"mesh": "default", "service": "bench", "tags": map[string]string{"kuma.io/service": "bench"}},
		"meshes":   []any{map[string]any{"name": "default", "defaultForbidMeshExternalServiceAccess": true}},
		"services": []any{map[string]any{"name": name, "mesh": "default", "cluster": benchCluster(name, port), "protocol": mesProtocol(proto), "port": port, "hostnames": []string{name + ".svc.meshext.local"}}},
		"policies": []any{map[string]any{
			"name": "allow-bench", "mesh": "default", "targetRef": map[string]any{"kind": "Mesh"},
			"from": []any{map[string]any{"targetRef": map[string]any{"kind": "Mesh"}, "default": map[string]any{"action": "Allow"}}},
		}},
		"defaultService": name,
		"tableKey":       listener,
	}
	return json.Marshal(cfg)
}

// addFilter rewrites the static config at src into dst with the filter
// inserted before the router of listener. It returns the Envoy environment
// the module needs.
func addFilter(src, dst, listener, plugin string, fcfg []byte) ([]string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	var boot map[string]any
	if err := json.Unmarshal(data, &boot); err != nil {
		return nil, err
	}
	env := []string{"GODEBUG=cgocheck=0", "ENVOY_DYNAMIC_MODULES_SEARCH_PATH=" + filepath.Dir(plugin)}
	if strings.Contains(string(data), dynamicModuleFilter) {
		// render already put it there.
		return env, os.WriteFile(dst, data, 0o644)
	}
	filter := map[string]any{
		"name": dynamicModuleFilter,
		"typedConfig": map[string]any{
			"@type":               "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
			"dynamicModuleConfig": map[string]any{"name": strings.TrimSuffix(strings.TrimPrefix(filepath.Base(plugin), "lib"), ".so"), "doNotClose": true},
			"filterName":          "meshext",
			"filterConfig":        map[string]any{"@type": "type.googleapis.com/google.protobuf.StringValue", "value": string(fcfg)},
		},
	}
	sr, _ := boot["staticResources"].(map[string]any)
	listeners, _ := sr["listeners"].([]any)
	inserted := 0
	for _, l := range listeners {
		lm, _ := l.(map[string]any)
		if lm["name"] != listener {
			continue
		}
		chains, _ := lm["filterChains"].([]any)
		for _, c := range chains {
			cm, _ := c.(map[string]any)
			filters, _ := cm["filters"].([]any)
			for _, f := range filters {
				fm, _ := f.(map[string]any)
				tc, _ := fm["typedConfig"].(map[string]any)
				hf, ok := tc["httpFilters"].([]any)
				if !ok {
					continue
				}
				out := make([]any, 0, len(hf)+1)
				for _, h := range hf {
					if hm, _ := h.(map[string]any); hm["name"] == "envoy.filters.http.router" {
						out = append(out, filter)
						inserted++
					}
					out = append(out, h)
				}
				tc["httpFilters"] = out
			}
		}
	}
	if inserted == 0 {
		return nil, fmt.Errorf("no HTTP router in listener %s of %s", listener, src)
	}
	b, err := json.MarshalIndent(boot, "", " ")
	if err != nil {
		return nil, err
	}
	return env, os.WriteFile(dst, b, 0o644)
}

package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/plugin/egress"
)

// The filter config the harness gives the plugin must be one the plugin
// accepts, and it must allow the benchmark's requests.
func TestFilterConfigParsesAndAllows(t *testing.T) {
	raw, err := filterConfig("http", "outbound:127.0.0.1:1000", 8080)
	if err != nil {
		t.Fatal(err)
	}
	c, err := egress.Parse(raw)
	if err != nil {
		t.Fatalf("plugin rejects the harness's config: %v\n%s", err, raw)
	}
	r := c.Decide("127.0.0.1:1000", "")
	if r.Verdict != egress.Forward {
		t.Errorf("benchmark request not allowed: %+v", r)
	}
}

func TestAddFilterBeforeRouter(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "in.json")
	cfg := `{"staticResources":{"listeners":[
	 {"name":"other","filterChains":[{"filters":[{"typedConfig":{"httpFilters":[{"name":"envoy.filters.http.router"}]}}]}]},
	 {"name":"outbound:127.0.0.1:1000","filterChains":[{"filters":[{"typedConfig":{"httpFilters":[{"name":"envoy.filters.http.router"}]}}]}]}]}}`
	if err := os.WriteFile(src, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "out.json")
	env, err := addFilter(src, dst, "outbound:127.0.0.1:1000", "/x/libmeshext.so", []byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(env, " ") != "GODEBUG=cgocheck=0 ENVOY_DYNAMIC_MODULES_SEARCH_PATH=/x" {
		t.Errorf("env %v", env)
	}
	var out struct {
		StaticResources struct {
			Listeners []struct {
				Name         string
				FilterChains []struct {
					Filters []struct {
						TypedConfig struct {
							HTTPFilters []struct{ Name string } `json:"httpFilters"`
						} `json:"typedConfig"`
					}
				} `json:"filterChains"`
			}
		} `json:"staticResources"`
	}
	data, _ := os.ReadFile(dst)
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	names := func(i int) (n []string) {
		for _, f := range out.StaticResources.Listeners[i].FilterChains[0].Filters[0].TypedConfig.HTTPFilters {
			n = append(n, f.Name)
		}
		return n
	}
	if got := strings.Join(names(1), ","); got != dynamicModuleFilter+",envoy.filters.http.router" {
		t.Errorf("target listener filters: %s", got)
	}
	if got := strings.Join(names(0), ","); got != "envoy.filters.http.router" {
		t.Errorf("other listener changed: %s", got)
	}
	if _, err := addFilter(src, dst, "missing", "/x/libmeshext.so", nil); err == nil {
		t.Error("missing listener not reported")
	}
}

func TestRenderedExtras(t *testing.T) {
	got := renderedExtras([]byte(`"envoy.access_loggers.stdout" "StdoutAccessLog" "outlierDetection"`))
	if strings.Join(got, ";") != "an access log line per request/connection (stdout);outlier detection" {
		t.Errorf("extras %v", got)
	}
	if len(renderedExtras([]byte(`{}`))) != 0 {
		t.Error("extras in an empty config")
	}
}

func TestAccessLogFormat(t *testing.T) {
	cfg := `{"staticResources":{"listeners":[{"filterChains":[{"filters":[{"typedConfig":{"accessLog":[{"name":"envoy.access_loggers.stdout",
	  "typedConfig":{"logFormat":{"textFormatSource":{"inlineString":"[%START_TIME%] x\n"}}}}]}}]}]}]}}`
	if got := accessLogFormat([]byte(cfg)); got != "[%START_TIME%] x\n" {
		t.Errorf("format %q", got)
	}
	if got := accessLogFormat([]byte(`{"a":[1,2,{"b":{}}]}`)); got != "" {
		t.Errorf("format in a config without access log: %q", got)
	}
}

// runCP clears the child's -dir and nothing else (an earlier version removed
// its last argument, which was once the plugin library).
func TestRunCPClearsOnlyDir(t *testing.T) {
	tmp := t.TempDir()
	dir, keep := filepath.Join(tmp, "work"), filepath.Join(tmp, "libmeshext.so")
	for _, p := range []string{filepath.Join(dir, "old"), keep} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	argv := []string{"sh", "-c", `echo '{"n":7}'`, "sh", "-dir", dir, "-plugin", keep}
	r, _, err := runCP(context.Background(), argv, 10*time.Second)
	if err != nil || r.N != 7 {
		t.Fatalf("runCP: %+v %v", r, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "old")); !os.IsNotExist(err) {
		t.Errorf("-dir not cleared: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a file named after -dir was removed: %v", err)
	}
}

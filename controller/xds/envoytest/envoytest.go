// Package envoytest runs a real Envoy for tests of configuration delivery:
// it starts the binary from testenv.Envoy on an ephemeral admin port and
// reads back what Envoy actually loaded through the admin API.
package envoytest

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/envoyproc"
)

// Envoy is a running Envoy process (Admin, Get, Stat come from envoyproc).
type Envoy struct {
	*envoyproc.Proc
}

// Start runs Envoy with the bootstrap (JSON or YAML text) and waits, at most
// 20 s, until it is LIVE. The bootstrap's admin address should use port 0;
// Envoy writes the real one to a file envoyproc reads. The process is
// stopped at test cleanup, and its log is printed when the test failed.
func Start(t testing.TB, bootstrap string) *Envoy {
	t.Helper()
	p := envoyproc.StartT(t, envoyproc.Options{
		Bootstrap:    []byte(bootstrap),
		Args:         []string{"--drain-time-s", "0", "--parent-shutdown-time-s", "1"},
		ReadyTimeout: 20 * time.Second,
	})
	return &Envoy{p}
}

// Log is Envoy's output so far.
func (e *Envoy) Log() string { return e.LogText() }

// Config is what Envoy holds from dynamic configuration: resource name ->
// the version_info it arrived with.
type Config struct {
	Clusters  map[string]string
	Listeners map[string]string
	Secrets   map[string]string
	// Raw is the /config_dump JSON, for messages.
	Raw string
}

// ConfigDump reads the dynamic clusters, active listeners and active secrets.
func (e *Envoy) ConfigDump() (*Config, error) {
	raw, err := e.Get("/config_dump")
	if err != nil {
		return nil, err
	}
	var dump struct {
		Configs []struct {
			Type     string `json:"@type"`
			Clusters []struct {
				Version string `json:"version_info"`
				Cluster struct {
					Name string `json:"name"`
				} `json:"cluster"`
			} `json:"dynamic_active_clusters"`
			Listeners []struct {
				Name   string `json:"name"`
				Active *struct {
					Version string `json:"version_info"`
				} `json:"active_state"`
			} `json:"dynamic_listeners"`
			Secrets []struct {
				Name    string `json:"name"`
				Version string `json:"version_info"`
			} `json:"dynamic_active_secrets"`
		} `json:"configs"`
	}
	if err := json.Unmarshal([]byte(raw), &dump); err != nil {
		return nil, fmt.Errorf("config_dump: %w", err)
	}
	c := &Config{Clusters: map[string]string{}, Listeners: map[string]string{}, Secrets: map[string]string{}, Raw: raw}
	for _, cfg := range dump.Configs {
		for _, cl := range cfg.Clusters {
			c.Clusters[cl.Cluster.Name] = cl.Version
		}
		for _, l := range cfg.Listeners {
			if l.Active != nil {
				c.Listeners[l.Name] = l.Active.Version
			}
		}
		for _, s := range cfg.Secrets {
			c.Secrets[s.Name] = s.Version
		}
	}
	return c, nil
}

// WaitConfig polls the config dump every 50 ms until ok accepts it, failing
// the test after timeout with the last dump and Envoy's log.
func (e *Envoy) WaitConfig(t testing.TB, timeout time.Duration, what string, ok func(*Config) bool) *Config {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *Config
	var lastErr error
	for time.Now().Before(deadline) {
		c, err := e.ConfigDump()
		if err == nil {
			last = c
			if ok(c) {
				return c
			}
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("envoy did not reach %q within %v: clusters=%v listeners=%v secrets=%v", what, timeout, last.Clusters, last.Listeners, last.Secrets)
	}
	t.Fatalf("envoy did not reach %q within %v: %v", what, timeout, lastErr)
	return nil
}

// WaitStat polls a stat until ok accepts its value.
func (e *Envoy) WaitStat(t testing.TB, timeout time.Duration, name string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var v string
	var err error
	for time.Now().Before(deadline) {
		v, err = e.Stat(name)
		if err == nil && ok(v) {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("stat %s did not reach the expected value within %v: last %q (%v)", name, timeout, v, err)
	return ""
}

// FileBootstrap is a minimal bootstrap for file-based CDS/LDS: node id,
// admin on 127.0.0.1:0, and path config sources watched through their directory.
func FileBootstrap(node, cdsPath, ldsPath string) string {
	return fmt.Sprintf(`{
  "node": {"id": %q, "cluster": "meshext-test"},
  "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
  "dynamic_resources": {
    "cds_config": {"resource_api_version": "V3", "path_config_source": {"path": %q, "watched_directory": {"path": %q}}},
    "lds_config": {"resource_api_version": "V3", "path_config_source": {"path": %q, "watched_directory": {"path": %q}}}
  }
}`, node, cdsPath, filepath.Dir(cdsPath), ldsPath, filepath.Dir(ldsPath))
}

// ADSBootstrap is a minimal bootstrap for CDS/LDS over ADS (delta or SotW)
// from a management server at addr: unix:PATH (a pipe), or host:port over
// plain TCP.
func ADSBootstrap(node, addr string, delta bool) string {
	api := "GRPC"
	if delta {
		api = "DELTA_GRPC"
	}
	endpoint := fmt.Sprintf(`{"pipe": {"path": %q}}`, strings.TrimPrefix(addr, "unix:"))
	if !strings.HasPrefix(addr, "unix:") {
		host, port, _ := strings.Cut(addr, ":")
		endpoint = fmt.Sprintf(`{"socket_address": {"address": %q, "port_value": %s}}`, host, port)
	}
	return fmt.Sprintf(`{
  "node": {"id": %q, "cluster": "meshext-test"},
  "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
  "dynamic_resources": {
    "ads_config": {"api_type": %q, "transport_api_version": "V3", "grpc_services": [{"envoy_grpc": {"cluster_name": "meshext_xds"}}]},
    "cds_config": {"resource_api_version": "V3", "ads": {}},
    "lds_config": {"resource_api_version": "V3", "ads": {}}
  },
  "static_resources": {
    "clusters": [{
      "name": "meshext_xds", "type": "STATIC", "connect_timeout": "1s",
      "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}},
      "load_assignment": {"cluster_name": "meshext_xds", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": %s}}]}]}
    }]
  }
}`, node, api, endpoint)
}

package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshext/meshext/e2e/envoyproc"
)

// renderer produces variant (c) and (d) Envoy configs with the real
// `meshext render` CLI from a generated MES + Dataplane, so the benchmark
// measures exactly what users run.
type renderer struct {
	meshext string // bin/meshext
	cpbench string // bin/meshext-cpbench: render.Render + render.StaticBootstrap
	plugin  string // bin/libmeshext.so ("" = not built)
}

type renderRequest struct {
	Proto      string
	UpHost     string
	UpPort     int
	CAFile     string
	ServerName string
	WithFilter bool
	// WithPolicies adds a second service the Dataplane is denied and a
	// MeshTrafficPermission set allowing the measured one (the (c+p) variant).
	WithPolicies bool
	Dir          string
}

type renderedConfig struct {
	ConfigPath string
	Target     string   // where the client connects
	Env        []string // extra environment for Envoy
	Commands   []string // how the config was made, for the report
	Extras     []string // what the rendered config has that the hand-written one lacks
	// FilterByHarness: (d)'s filter was inserted by meshext-bench, not render.
	FilterByHarness bool
	// AccessLogFormat is the text format of the rendered access log ("" = none).
	AccessLogFormat string
	// PolicyNote says what (c+p)'s config shows of the rendered decisions.
	PolicyNote string
}

// accessLogFormat finds the first access log's inline text format in a
// protojson-encoded config.
func accessLogFormat(config []byte) string {
	var v any
	if json.Unmarshal(config, &v) != nil {
		return ""
	}
	var walk func(any) string
	walk = func(v any) string {
		switch t := v.(type) {
		case map[string]any:
			if logs, ok := t["accessLog"].([]any); ok && len(logs) > 0 {
				if l, ok := logs[0].(map[string]any); ok {
					tc, _ := l["typedConfig"].(map[string]any)
					lf, _ := tc["logFormat"].(map[string]any)
					src, _ := lf["textFormatSource"].(map[string]any)
					if s, ok := src["inlineString"].(string); ok {
						return s
					}
				}
			}
			for _, c := range t {
				if s := walk(c); s != "" {
					return s
				}
			}
		case []any:
			for _, c := range t {
				if s := walk(c); s != "" {
					return s
				}
			}
		}
		return ""
	}
	return walk(v)
}

// renderedExtras names features of a rendered config that cost data-path
// work and are absent from the hand-written baseline, so the (c)/(b) ratio
// can be read.
func renderedExtras(config []byte) []string {
	s := string(config)
	var out []string
	for _, f := range []struct{ needle, what string }{
		{"envoy.access_loggers", "an access log line per request/connection (" + accessLogSink(s) + ")"},
		{"outlierDetection", "outlier detection"},
		{"autoHostRewrite", "auto host rewrite"},
		{"envoy.filters.http.dynamic_modules", "the meshext dynamic-module filter"},
		{"envoy.filters.network.rbac", "network RBAC"},
		{"envoy.filters.http.rbac", "HTTP RBAC"},
	} {
		if strings.Contains(s, f.needle) {
			out = append(out, f.what)
		}
	}
	return out
}

func accessLogSink(s string) string {
	switch {
	case strings.Contains(s, "StdoutAccessLog"):
		return "stdout"
	case strings.Contains(s, "FileAccessLog"):
		return "file"
	}
	return "other sink"
}

// mesProtocol maps a benchmark protocol to the MES match.protocol.
func mesProtocol(proto string) string {
	switch proto {
	case "tcp":
		return "tcp"
	case "grpc":
		return "grpc"
	}
	return "http"
}

// benchPorts are the ports a rendered Dataplane listens on; all ephemeral,
// so the four protocols' Envoys run side by side.
type benchPorts struct{ outbound, deniedOutbound, inbound, service, redirect, admin int }

func allocPorts() (benchPorts, error) {
	var p benchPorts
	for _, dst := range []*int{&p.outbound, &p.deniedOutbound, &p.inbound, &p.service, &p.redirect, &p.admin} {
		port, err := envoyproc.FreePort()
		if err != nil {
			return p, err
		}
		*dst = port
	}
	return p, nil
}

// writeResources writes the MES and a Dataplane whose outbound listens on
// 127.0.0.1:ports.outbound.
func writeResources(dir string, r renderRequest, ports benchPorts) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var tls string
	if r.Proto == "tls" {
		ca, err := os.ReadFile(r.CAFile)
		if err != nil {
			return err
		}
		tls = fmt.Sprintf(`  tls:
    enabled: true
    verification:
      serverName: %s
      subjectAltNames:
      - type: Exact
        value: %s
      caCert:
        inline: %s
`, r.ServerName, r.ServerName, base64.StdEncoding.EncodeToString(ca))
	}
	mesDoc := func(name string, matchPort int) string {
		return fmt.Sprintf(`apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata:
  name: %s
  namespace: kuma-system
  labels:
    kuma.io/mesh: default
spec:
  match:
    type: HostnameGenerator
    port: %d
    protocol: %s
  endpoints:
  - address: %s
    port: %d
%s`, name, matchPort, mesProtocol(r.Proto), r.UpHost, r.UpPort, tls)
	}
	mes := mesDoc("bench-"+r.Proto, r.UpPort)
	deniedOutbound := ""
	if r.WithPolicies {
		deniedOutbound = fmt.Sprintf(`  - port: %d
    backendRef:
      kind: MeshExternalService
      name: bench-%s-denied
`, ports.deniedOutbound, r.Proto)
	}
	dp := fmt.Sprintf(`type: Dataplane
mesh: default
name: bench
networking:
  address: 127.0.0.1
  inbound:
  - port: %d
    servicePort: %d
    serviceAddress: 127.0.0.1
    tags:
      kuma.io/service: bench
      kuma.io/protocol: tcp
  outbound:
  - port: %d
    backendRef:
      kind: MeshExternalService
      name: bench-%s
%s  transparentProxying:
    redirectPortOutbound: %d
  admin:
    port: %d
`, ports.inbound, ports.service, ports.outbound, r.Proto, deniedOutbound, ports.redirect, ports.admin)
	if r.WithPolicies {
		mes += "---\n" + mesDoc("bench-"+r.Proto+"-denied", r.UpPort+1) + fmt.Sprintf(`---
type: MeshTrafficPermission
name: allow-bench
mesh: default
spec:
  targetRef: {kind: MeshExternalService, name: bench-%[1]s}
  from:
    - targetRef: {kind: MeshService, name: bench}
      default: {action: Allow}
---
type: MeshTrafficPermission
name: deny-bench-other
mesh: default
spec:
  targetRef: {kind: MeshExternalService, name: bench-%[1]s-denied}
  from:
    - targetRef: {kind: MeshService, name: bench}
      default: {action: Deny}
`, r.Proto)
	}
	if err := os.WriteFile(filepath.Join(dir, "mes.yaml"), []byte(mes), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "dataplane.yaml"), []byte(dp), 0o644)
}

func (rd renderer) config(r renderRequest) (renderedConfig, error) {
	var rc renderedConfig
	if r.WithFilter {
		if r.Proto == "tcp" {
			return rc, fmt.Errorf("the Go filter is an HTTP filter; TCP authorization is native network RBAC")
		}
		if rd.plugin == "" {
			return rc, fmt.Errorf("bin/libmeshext.so not built (make plugin)")
		}
	}
	ports, err := allocPorts()
	if err != nil {
		return rc, err
	}
	if err := writeResources(r.Dir, r, ports); err != nil {
		return rc, err
	}
	var argv []string
	renderHelp := rd.renderHelp()
	pluginFlag := strings.Contains(renderHelp, "-plugin")
	if strings.Contains(renderHelp, "Usage: meshext render") {
		// What users run: meshext render writes <out>/<node>/bootstrap.json.
		// With --plugin, (c) is --plugin off (native HTTP RBAC, no Go in
		// Envoy) and (d) the default --plugin on (the meshext Go filter).
		out := filepath.Join(r.Dir, "out")
		argv = []string{rd.meshext, "render", filepath.Join(r.Dir, "mes.yaml"), filepath.Join(r.Dir, "dataplane.yaml"), "--out", out}
		if pluginFlag {
			if r.WithFilter {
				argv = append(argv, "--plugin", "on")
			} else {
				argv = append(argv, "--plugin", "off")
			}
		}
		rc.ConfigPath = filepath.Join(out, "default.bench", "bootstrap.json")
	} else {
		// Older trees: the same library calls through meshext-cpbench.
		if rd.cpbench == "" {
			return rc, fmt.Errorf("neither `meshext render` nor bin/meshext-cpbench is available")
		}
		rc.ConfigPath = filepath.Join(r.Dir, "envoy.json")
		argv = []string{rd.cpbench, "static", "-res", r.Dir, "-node", "default.bench", "-out", rc.ConfigPath}
	}
	if out, err := runBounded(60*time.Second, argv[0], argv[1:]...); err != nil {
		return rc, fmt.Errorf("render: %v: %s", err, oneLine(lastLines(out, 3)))
	}
	rc.Target = fmt.Sprintf("127.0.0.1:%d", ports.outbound)
	rc.Commands = []string{"# resources: " + r.Dir + "/{mes,dataplane}.yaml", shellJoin(relArgv(argv))}
	if data, err := os.ReadFile(rc.ConfigPath); err == nil {
		if x := renderedExtras(data); len(x) > 0 {
			rc.Extras = []string{"the rendered config (c) carries, beyond (b): " + strings.Join(x, ", ")}
		}
		rc.AccessLogFormat = accessLogFormat(data)
		if r.WithPolicies {
			// The denial of the second service is decided when rendering:
			// HTTP and gRPC outbounds answer it directly (403 / status 7)
			// with the policy's name; a TCP outbound has no upstream.
			denial := "the 403 / status 7 naming `deny-bench-other`"
			found := strings.Contains(string(data), "deny-bench-other")
			if r.Proto == "tcp" {
				denial, found = "the second service's outbound to the endpoint-less `meshext_denied` cluster", strings.Contains(string(data), `"meshext_denied"`)
			}
			rc.PolicyNote = fmt.Sprintf("(c+p): the policy set's denial is in the rendered config (%s): %v; authorization filters in the whole config: %d",
				denial, found, strings.Count(string(data), "envoy.filters.http.rbac")+strings.Count(string(data), "envoy.filters.network.rbac")+strings.Count(string(data), dynamicModuleFilter))
		}
	}
	if r.WithFilter {
		listener := "outbound:" + rc.Target
		fcfg, err := filterConfig(r.Proto, listener, r.UpPort)
		if err != nil {
			return rc, err
		}
		data, _ := os.ReadFile(rc.ConfigPath)
		rc.FilterByHarness = !strings.Contains(string(data), dynamicModuleFilter)
		withFilter := filepath.Join(r.Dir, "envoy-filter.json")
		if rc.Env, err = addFilter(rc.ConfigPath, withFilter, listener, rd.plugin, fcfg); err != nil {
			return rc, err
		}
		if rc.FilterByHarness {
			rc.ConfigPath = withFilter
			rc.Commands = append(rc.Commands, "# "+withFilter+": the same with the meshext filter before the router (inserted by meshext-bench)")
		}
	}
	return rc, nil
}

// renderHelp is `meshext render --help` ("" without a meshext binary).
func (rd renderer) renderHelp() string {
	if rd.meshext == "" {
		return ""
	}
	out, _ := runBounded(10*time.Second, rd.meshext, "render", "--help")
	return out
}

func runBounded(d time.Duration, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
		return string(out), err
	case <-time.After(d):
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		<-done
		return string(out), fmt.Errorf("%s timed out after %s", name, d)
	}
}

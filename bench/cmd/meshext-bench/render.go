package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// renderer produces variant (c) and (d) Envoy configs with the real
// `meshext render` CLI from a generated MES + Dataplane, so the benchmark
// measures exactly what users run.
type renderer struct {
	meshext string // bin/meshext
	plugin  string // bin/libmeshext.so ("" = not built)
}

type renderRequest struct {
	Proto      string
	UpHost     string
	UpPort     int
	CAFile     string
	ServerName string
	WithFilter bool
	Dir        string
}

type renderedConfig struct {
	ConfigPath string
	Target     string   // where the client connects
	Env        []string // extra environment for Envoy
	Commands   []string // how the config was made, for the report
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

// writeResources writes the MES and a Dataplane whose outbound listens on
// 127.0.0.1:listenPort.
func writeResources(dir string, r renderRequest, listenPort int) error {
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
	mes := fmt.Sprintf(`apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata:
  name: bench-%s
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
%s`, r.Proto, r.UpPort, mesProtocol(r.Proto), r.UpHost, r.UpPort, tls)
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
  admin:
    port: 0
`, listenPort+1, listenPort+2, listenPort, r.Proto)
	if err := os.WriteFile(filepath.Join(dir, "mes.yaml"), []byte(mes), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "dataplane.yaml"), []byte(dp), 0o644)
}

func (rd renderer) config(r renderRequest) (renderedConfig, error) {
	var rc renderedConfig
	if rd.meshext == "" {
		return rc, fmt.Errorf("bin/meshext not built")
	}
	if r.WithFilter && rd.plugin == "" {
		return rc, fmt.Errorf("bin/libmeshext.so not built (make plugin)")
	}
	if err := probeRender(rd.meshext); err != nil {
		return rc, err
	}
	return rc, fmt.Errorf("meshext render integration pending")
}

// probeRender checks that this meshext has a render command.
func probeRender(meshext string) error {
	out, err := runBounded(10*time.Second, meshext, "render", "--help")
	if err != nil && !strings.Contains(out, "render") {
		return fmt.Errorf("`meshext render` not available: %s", oneLine(lastLines(out, 2)))
	}
	return nil
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

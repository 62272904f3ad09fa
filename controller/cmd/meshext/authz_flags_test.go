package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/ipam"
)

func TestRenderAuthzFlags(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	// A library path is for the contrib flavor only.
	if _, stderr, code := runRenderTest(t, examplesDir, "--out", t.TempDir(), "--plugin", "/x/libmeshext-golang.so"); code != 2 || !strings.Contains(stderr, "contrib") {
		t.Errorf("stock + library path: exit %d, stderr:\n%s", code, stderr)
	}
	// Default: the meshext dynamic module on the proxy listener when asked;
	// the outbounds' access is decided when rendering (no filter, no RBAC).
	dir := t.TempDir()
	if _, stderr, code := runRenderTest(t, examplesDir, "--out", dir, "--system-ca-path", inspectCA, "--http-proxy-listen", "127.0.0.1:15080"); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	lds, err := os.ReadFile(filepath.Join(dir, "default.example", "lds.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"envoy.filters.http.dynamic_modules", "outbound:http-proxy"} {
		if !strings.Contains(string(lds), want) {
			t.Errorf("lds.json lacks %s", want)
		}
	}
	if strings.Contains(string(lds), "envoy.filters.network.rbac") {
		t.Error("lds.json has network RBAC though every tcp service is allowed")
	}
	envoyValidateFile(t, filepath.Join(dir, "default.example", "bootstrap.json"))
	// --plugin off: native HTTP RBAC, no Go filter.
	dir = t.TempDir()
	if _, stderr, code := runRenderTest(t, examplesDir, "--out", dir, "--system-ca-path", inspectCA, "--plugin", "off", "--http-proxy-listen", "127.0.0.1:15080"); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	lds, _ = os.ReadFile(filepath.Join(dir, "default.example", "lds.json"))
	if strings.Contains(string(lds), "dynamic_modules") || !strings.Contains(string(lds), "envoy.filters.http.rbac") {
		t.Error("--plugin off: want native HTTP RBAC and no dynamic module")
	}
}

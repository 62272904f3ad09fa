package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/ipam"
)

const (
	inspectWorld = "testdata/inspect/world.yaml"
	inspectCA    = "testdata/inspect/ca.pem"
	examplesDir  = "../../../examples"
)

func runInspectTest(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = inspectMain(args, &out, &errb)
	return out.String(), errb.String(), code
}

func inspectGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "inspect", name)
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create)", err)
	}
	if got != string(want) {
		t.Fatalf("output differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func TestInspectGolden(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	cases := []struct {
		name     string
		args     []string
		wantCode int
	}{
		{"examples.table", []string{examplesDir, "--system-ca-path", inspectCA}, 0},
		// Kuma's default policies are left out of the world cases: policies
		// have their own golden (TestInspectPolicies).
		{"world.table", []string{inspectWorld, "--system-ca-path", inspectCA, "--skip-default-policies", "*"}, 1},
		{"world.json", []string{"-o", "json", "--system-ca-path", inspectCA, inspectWorld, "--skip-default-policies", "*"}, 1},
		{"world.yaml", []string{inspectWorld, "--output", "yaml", "--system-ca-path", inspectCA, "--skip-default-policies", "*"}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := runInspectTest(t, c.args...)
			if code != c.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, c.wantCode, errOut)
			}
			inspectGolden(t, c.name+".golden", out)
			if c.wantCode == 0 && errOut != "" {
				t.Fatalf("unexpected stderr: %s", errOut)
			}
			if c.wantCode == 1 {
				inspectGolden(t, "world.stderr.golden", errOut)
			}
		})
	}
}

type inspectJSON struct {
	Services []struct {
		Mesh, Name, VIP string
		Hostnames       []struct{ Hostname string }
		Broken          string
		TLS             *struct {
			SANMatchers []struct{ SANType, Match, Value string }
			CASource    string
		}
		Access struct {
			Default string
			Rules   []struct{ Policy, From, Action string }
		}
	}
}

func inspectParsed(t *testing.T, args ...string) (inspectJSON, string, int) {
	t.Helper()
	out, errOut, code := runInspectTest(t, append([]string{"-o", "json"}, args...)...)
	var v inspectJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	return v, errOut, code
}

func TestInspectJSONContent(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	v, errOut, _ := inspectParsed(t, "--system-ca-path", inspectCA, inspectWorld)
	byKey := map[string]int{}
	for i, s := range v.Services {
		byKey[s.Mesh+"/"+s.Name] = i
	}
	api := v.Services[byKey["default/api"]]
	var types []string
	for _, m := range api.TLS.SANMatchers {
		types = append(types, m.SANType+" "+m.Match)
	}
	if strings.Join(types, ",") != "URI Exact,IP_ADDRESS Exact,DNS Prefix" || api.TLS.CASource != "secret:api-ca" {
		t.Errorf("api TLS: %+v", api.TLS)
	}
	if api.Access.Default != "Deny" || len(api.Access.Rules) != 3 {
		t.Errorf("api access: %+v", api.Access)
	}
	if other := v.Services[byKey["other/api"]]; other.Access.Default != "Allow" || len(other.Access.Rules) != 1 || other.Access.Rules[0].Action != "Deny" {
		t.Errorf("other/api access: %+v", other.Access)
	}
	if ns := v.Services[byKey["default/no-secret"]]; ns.Broken == "" || ns.TLS != nil || ns.VIP == "" {
		t.Errorf("no-secret: %+v", ns)
	}
	// Problems are on stderr in FILE:LINE: form.
	for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if !strings.HasPrefix(line, inspectWorld+":") {
			t.Errorf("stderr line not in FILE:LINE form: %q", line)
		}
	}
}

// --state-dir keeps VIPs across runs and when files are added.
func TestInspectStateDir(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	state := t.TempDir()
	first, _, code := inspectParsed(t, examplesDir, "--state-dir", state, "--system-ca-path", inspectCA)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	// World first on the command line: sorted-order allocation alone would move
	// the examples' VIPs; the state directory must not.
	second, _, _ := inspectParsed(t, inspectWorld, examplesDir, "--state-dir", state, "--system-ca-path", inspectCA)
	vips := map[string]string{}
	for _, s := range second.Services {
		vips[s.Mesh+"/"+s.Name] = s.VIP
	}
	seen := map[string]string{}
	for _, s := range first.Services {
		if vips[s.Mesh+"/"+s.Name] != s.VIP {
			t.Errorf("%s/%s moved from %s to %s", s.Mesh, s.Name, s.VIP, vips[s.Mesh+"/"+s.Name])
		}
	}
	for k, vip := range vips {
		if other, dup := seen[vip]; dup {
			t.Errorf("VIP %s held by %s and %s", vip, other, k)
		}
		seen[vip] = k
	}
	if _, err := os.Stat(filepath.Join(state, "ipam.json")); err != nil {
		t.Errorf("state not written: %v", err)
	}
}

func TestInspectCIDRAndUsage(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	v, _, _ := inspectParsed(t, examplesDir, "--cidr", "10.9.0.0/16", "--system-ca-path", inspectCA)
	if v.Services[0].VIP != "10.9.0.1" {
		t.Errorf("--cidr: first VIP %s", v.Services[0].VIP)
	}
	t.Setenv(ipam.EnvCIDR, "fd00:fd02::/64")
	v, _, _ = inspectParsed(t, examplesDir, "--system-ca-path", inspectCA)
	if v.Services[0].VIP != "fd00:fd02::1" {
		t.Errorf("env CIDR: first VIP %s", v.Services[0].VIP)
	}

	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"bad cidr", []string{examplesDir, "--cidr", "242.0.0.0/40"}, 2, `MeshExternalServiceCIDR is invalid: "242.0.0.0/40" (from flag)`},
		{"bad output", []string{examplesDir, "-o", "xml"}, 2, `-o "xml": want table, json or yaml`},
		{"no path", nil, 2, "at least one PATH is required"},
		{"missing path", []string{"does-not-exist"}, 2, "does-not-exist"},
		{"help", []string{"--help"}, 0, "Usage: meshext inspect PATH..."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errOut, code := runInspectTest(t, c.args...)
			if code != c.wantCode || !strings.Contains(errOut, c.wantErr) {
				t.Fatalf("exit %d stderr %q; want %d and %q", code, errOut, c.wantCode, c.wantErr)
			}
		})
	}
}

// TestInspectEgress: with mesh mTLS, every service says it leaves through
// the ZoneEgress with its SNI, the rules policy makes the default a deny,
// and the identities section lists the mesh CA and each node's SPIFFE ID
// and URI SANs (serials only with a running meshext run's state).
func TestInspectEgress(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	out, errOut, code := runInspectTest(t, examplesDir, "../../../examples-egress", "--system-ca-path", inspectCA)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	inspectGolden(t, "egress.table.golden", out)
	if !strings.Contains(errOut, `mesh "default": CA "ca-1" is not created yet`) {
		t.Fatalf("stderr: %s", errOut)
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
	"github.com/meshext/meshext/e2e/testenv"
)

// TestMain lets the test binary stand in for meshext-bench as the upstream
// child process the harness starts (startUpstream re-executes itself).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "upstream" {
		os.Exit(runUpstream(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// The egress section end to end on real parts, HTTP/1.1 only, one short
// round: meshext render, the workload and ZoneEgress Envoys, the stand-in
// upstream and wrk. Every variant serves without errors, and the counters
// show the authorization ran where the variant says: the egress's Go
// filter in (e), native RBAC at the egress in (e'), nothing denied, and
// nothing per request in the workload Envoys of (c) and (d) (decided when
// rendering).
// No figure is asserted.
func TestEgressSectionRunsEveryVariant(t *testing.T) {
	envoy := testenv.Envoy(t)
	bin := filepath.Join(testenv.RepoRoot(), "bin")
	meshext, plugin := filepath.Join(bin, "meshext"), filepath.Join(bin, "libmeshext.so")
	for _, p := range []string{meshext, plugin} {
		_, err := os.Stat(p)
		testenv.Require(t, err == nil, p+" (make build plugin)")
	}
	wrk, err := exec.LookPath("wrk")
	testenv.Require(t, err == nil, "wrk (apt-get install wrk)")
	h2load, _ := exec.LookPath("h2load")
	if h2load == "" {
		h2load = "h2load" // only checked for presence; gRPC is not run here
	}
	// Private copies: bin/ is shared with builds that may replace it.
	work := t.TempDir()
	for _, p := range []*string{&meshext, &plugin} {
		dst := filepath.Join(work, filepath.Base(*p))
		if err := copyFile(*p, dst); err != nil {
			t.Fatal(err)
		}
		*p = dst
	}
	saved := egressProtos
	egressProtos = egressProtos[:1] // HTTP/1.1
	t.Cleanup(func() { egressProtos, failures = saved, nil })
	failures = nil

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	md := runEgress(ctx, dpConfig{envoy: envoy, wrk: wrk, h2load: h2load, durations: time.Second, rounds: 1,
		workDir: work, conns: map[string]int{"http": 4}, streams: 1,
		render: renderer{meshext: meshext, plugin: plugin}, pin: false})
	if len(failures) > 0 || strings.Contains(md, "not available") {
		t.Fatalf("failures %v in:\n%s", failures, md)
	}
	for _, v := range egressVariants {
		row := regexp.MustCompile(`(?m)^\| \(` + regexp.QuoteMeta(v.key) + `\) [^|]+\| (\d+) \|.*\| (\d+) \|$`).FindStringSubmatch(md)
		if row == nil {
			t.Errorf("no figures for (%s) in:\n%s", v.key, md)
			continue
		}
		if n, _ := strconv.Atoi(row[1]); n == 0 {
			t.Errorf("(%s) served 0 req/s", v.key)
		}
		if row[2] != "0" {
			t.Errorf("(%s) had %s errors", v.key, row[2])
		}
	}
	for _, want := range []string{
		`\(e\) egress Envoy: Go filter [1-9]\d* allowed, 0 denied, 0 errors`,
		`\(e'\) egress Envoy: native RBAC [1-9]\d* allowed, 0 denied`,
		`\(d\) workload Envoy: Go filter 0 allowed, 0 denied, 0 errors, native RBAC 0 allowed, 0 denied;`,
		`\(c\) workload Envoy: native RBAC 0 allowed, 0 denied;`,
	} {
		if !regexp.MustCompile(want).MatchString(md) {
			t.Errorf("no match for %s in the decisions:\n%s", want, md)
		}
	}
}

func benchEgressPorts() egressPorts {
	return egressPorts{
		outbound: map[string]int{"http": 20001, "tcp": 20002, "grpc": 20003},
		inbound:  20004, service: 20005, admin: 20006, egress: 20007, egressAdmin: 20008,
		upstream: map[string]string{"http": "127.0.0.1:30001", "tcp": "127.0.0.1:30002", "grpc": "127.0.0.1:30003"},
	}
}

// Every variant's resources load and pass meshext's validation (Kuma's
// rules); the egress variants, and only they, carry the mTLS mesh, the
// ZoneEgress and a MeshTrafficPermission allowing the bench workload.
func TestEgressResourcesAreValid(t *testing.T) {
	for _, v := range egressVariants {
		t.Run(variantDir(v.key), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resources.yaml")
			if err := os.WriteFile(path, []byte(egressResources(v, benchEgressPorts())), 0o644); err != nil {
				t.Fatal(err)
			}
			set, problems, err := resource.Load([]string{path}, resource.Options{})
			if err != nil {
				t.Fatal(err)
			}
			valid, vproblems := validate.Validate(set)
			for _, p := range append(problems, vproblems...) {
				t.Errorf("%s:%d: %s %s/%s: %s: %s", p.File, p.Line, p.Kind, p.Mesh, p.Name, p.Field, p.Message)
			}
			if got := len(valid.MeshExternalServices); got != len(egressProtos) {
				t.Errorf("%d MeshExternalServices, want %d", got, len(egressProtos))
			}
			if len(valid.Dataplanes) != 1 || len(valid.Dataplanes[0].Networking.Outbound) != len(egressProtos) {
				t.Errorf("want one Dataplane with %d outbounds: %+v", len(egressProtos), valid.Dataplanes)
			}
			want := 0
			if v.egress {
				want = 1
			}
			if len(valid.ZoneEgresses) != want || len(valid.MeshTrafficPermissions) != want || len(valid.Meshes) != want {
				t.Errorf("egress %v: %d ZoneEgress, %d MeshTrafficPermission, %d Mesh; want %d each",
					v.egress, len(valid.ZoneEgresses), len(valid.MeshTrafficPermissions), len(valid.Meshes), want)
			}
		})
	}
}

// The policy names the SPIFFE ID Kuma gives the Dataplane's service, and
// the outbounds and endpoints are the ports the harness allocated.
func TestEgressResourcesNameTheWorkloadAndPorts(t *testing.T) {
	y := egressResources(egressVariants[evE], benchEgressPorts())
	for _, want := range []string{
		`value: "spiffe://default/bench"`,
		"kuma.io/service: bench",
		"port: 20007", // the ZoneEgress
		"port: 20001", "port: 20002", "port: 20003",
		"{address: 127.0.0.1, port: 30002}",
		"protocol: grpc",
		"enabledBackend: ca-1",
		"zoneEgress: true",
	} {
		if !strings.Contains(y, want) {
			t.Errorf("resources lack %q:\n%s", want, y)
		}
	}
	if d := egressResources(egressVariants[evC], benchEgressPorts()); strings.Contains(d, "mtls") || strings.Contains(d, "ZoneEgress") {
		t.Errorf("the direct variant must keep mTLS off and have no egress:\n%s", d)
	}
}

func TestEgressNodes(t *testing.T) {
	if got := egressNodes(egressVariants[evC]); len(got) != 1 || got[0] != "default.bench" {
		t.Errorf("direct nodes %v", got)
	}
	got := egressNodes(egressVariants[evE2])
	if len(got) != 2 || got[1] != names.ZoneEgressNodeID("bench-egress") {
		t.Errorf("egress nodes %v", got)
	}
	// meshext render's directory for the egress node.
	if dir := names.PathElement(got[1]); dir != "%2Ebench-egress" {
		t.Errorf("egress node directory %q", dir)
	}
}

func TestEgressSkips(t *testing.T) {
	for _, proto := range []string{"http", "grpc"} {
		for i := range egressVariants {
			if why := egressSkips(proto, i); why != "" {
				t.Errorf("%s (%s) skipped: %s", proto, egressVariants[i].key, why)
			}
		}
	}
	for i, want := range []bool{false, true, false, true} {
		if got := egressSkips("tcp", i) != ""; got != want {
			t.Errorf("tcp (%s) skipped %v, want %v", egressVariants[i].key, got, want)
		}
	}
	if variantDir("e'") != "e2" {
		t.Errorf("variantDir(e') = %q", variantDir("e'"))
	}
}

func TestSumRBACStats(t *testing.T) {
	body := `http.outbound_127.0.0.1_8080.rbac.allowed: 10
http.outbound_127.0.0.1_8080.rbac.denied: 2
http.outbound_127.0.0.1_8080.rbac.shadow_allowed: 99
http.outbound_127.0.0.1_8080.shadow_rbac.denied: 7
tcp.egress.rbac.allowed: 5
tcp.egress.rbac.denied: 1
garbage line
tcp.other.rbac.allowed: x
`
	allowed, denied := sumRBACStats(body)
	if allowed != 15 || denied != 3 {
		t.Errorf("sumRBACStats = %d allowed, %d denied; want 15, 3", allowed, denied)
	}
}

func TestRoundOrderRotates(t *testing.T) {
	for round, want := range [][]int{{0, 1, 2, 3}, {1, 2, 3, 0}, {2, 3, 0, 1}, {3, 0, 1, 2}, {0, 1, 2, 3}} {
		got := roundOrder(4, round)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("round %d: order %v, want %v", round, got, want)
		}
	}
}

func TestNotSaturated(t *testing.T) {
	for cpu, want := range map[float64]bool{0: false, 0.41: true, 0.59: true, 0.6: false, 0.97: false} {
		if got := notSaturated(cpu); got != want {
			t.Errorf("notSaturated(%v) = %v, want %v", cpu, got, want)
		}
	}
}

package run

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/controller/xds"
)

// TestLoopKeepsLastGoodInput runs the loop on file drops (no Envoy): changes
// arrive, a torn file and an invalid resource keep their last good version,
// and status, metrics and the state file report what happened.
func TestLoopKeepsLastGoodInput(t *testing.T) {
	t.Parallel()
	dir, state, out := t.TempDir(), t.TempDir(), t.TempDir()
	dropWrite(t, dir, "gen.yaml", generatorYAML)
	dropWrite(t, dir, "a.yaml", tcpMES("mes-a", 4000, 9001))
	r, _ := startRunner(t, Config{Dir: dir, StateDir: state, XDS: XDSFile, XDSDir: out, StatusListen: "127.0.0.1:0"})

	st := waitStatus(t, r, 5*time.Second, "mes-a served", func(s *Status) bool {
		a := service(s, "mes-a")
		return a != nil && a.Broken == "" && a.VIP != ""
	})
	a := service(st, "mes-a")
	if len(a.Hostnames) != 1 || a.Hostnames[0] != "mes-a.svc.meshext.local" {
		t.Fatalf("hostnames %v", a.Hostnames)
	}
	cds := xds.CDSPath(out, "default")
	if !strings.Contains(readFile(t, cds), "default_mes-a__default_extsvc_4000") {
		t.Fatalf("cds.json lacks mes-a")
	}

	// A torn/garbled file keeps its last good version while a new file arrives.
	dropWrite(t, dir, "a.yaml", "type: MeshExternalService\nname: mes-a\n  spec: [\n")
	dropWrite(t, dir, "b.yaml", tcpMES("mes-b", 4001, 9002))
	st = waitStatus(t, r, 5*time.Second, "mes-b served and a.yaml reported", func(s *Status) bool {
		return service(s, "mes-b") != nil && hasProblem(s, "a.yaml")
	})
	if service(st, "mes-a") == nil || service(st, "mes-a").VIP != a.VIP {
		t.Fatalf("mes-a must keep being served with its VIP %s: %+v", a.VIP, service(st, "mes-a"))
	}
	if c := readFile(t, cds); !strings.Contains(c, "default_mes-a__default_extsvc_4000") || !strings.Contains(c, "default_mes-b__default_extsvc_4001") {
		t.Fatalf("cds.json should hold mes-a (last good) and mes-b")
	}

	// A resource that parses but fails validation keeps its last good version too.
	dropWrite(t, dir, "a.yaml", tcpMES("mes-a", 70000, 9001))
	st = waitStatus(t, r, 5*time.Second, "invalid port reported", func(s *Status) bool {
		return hasProblem(s, "spec.match.port")
	})
	if a2 := service(st, "mes-a"); a2 == nil || a2.Port != 4000 {
		t.Fatalf("mes-a should be served at its last good port 4000: %+v", a2)
	}

	// Deleting a file really removes its resources.
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, r, 5*time.Second, "mes-a removed", func(s *Status) bool { return service(s, "mes-a") == nil })
	if strings.Contains(readFile(t, cds), "default_mes-a_") {
		t.Fatalf("cds.json still has mes-a after its file was deleted")
	}

	// Editors' temp files are ignored: no reload, no problems from them.
	before := r.Status().Reloads
	dropWrite(t, dir, ".b.yaml.swp", "garbage: [")
	dropWrite(t, dir, "b.yaml~", "garbage: [")
	time.Sleep(300 * time.Millisecond)
	if got := r.Status().Reloads; got != before {
		t.Fatalf("temp files caused %d reloads", got-before)
	}

	// The state file, /status, /metrics and /healthz agree.
	fromFile, err := ReadStatus(state)
	if err != nil {
		t.Fatal(err)
	}
	if service(fromFile, "mes-b") == nil {
		t.Fatalf("status.json lacks mes-b: %+v", fromFile.Services)
	}
	var fromHTTP Status
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+r.StatusAddr()+"/status")), &fromHTTP); err != nil {
		t.Fatal(err)
	}
	if service(&fromHTTP, "mes-b") == nil || fromHTTP.Resources["MeshExternalService"] != 1 {
		t.Fatalf("/status: %+v", fromHTTP)
	}
	metrics := httpGet(t, "http://"+r.StatusAddr()+"/metrics")
	for _, want := range []string{
		`meshext_resources{kind="MeshExternalService"} 1`,
		`meshext_reloads_total{result="ok"}`,
		`meshext_render_duration_seconds_count`,
		`meshext_last_success_timestamp_seconds`,
		`meshext_render_errors_total`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if body := httpGet(t, "http://"+r.StatusAddr()+"/healthz"); strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %q", body)
	}
}

func hasProblem(s *Status, substr string) bool {
	for _, p := range s.Problems {
		if strings.Contains(p.Error(), substr) {
			return true
		}
	}
	return false
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{XDS: XDSFile, XDSDir: "/x"}, "--dir is required"},
		{Config{Dir: "d", XDS: "grpc"}, `--xds "grpc"`},
		{Config{Dir: "d", XDS: XDSFile}, "needs --xds-dir"},
		{Config{Dir: "d", XDS: XDSADS, ADSListen: "nope"}, "--ads-listen"},
		{Config{Dir: "d", XDS: XDSADS, ADSListen: ":0", UpstreamDNS: "dns.example:53"}, "--upstream-dns"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", tc.cfg, err, tc.want)
		}
	}
}

// TestConfigMapStyleSwap follows a drop directory updated the way Kubernetes
// updates a mounted ConfigMap: new files in a hidden directory, then an
// atomic swap of the ..data symlink the visible files point through.
func TestConfigMapStyleSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	version := func(name string, files map[string]string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		for f, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name, f), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", map[string]string{"gen.yaml": generatorYAML, "mes.yaml": tcpMES("mes-a", 4000, 9001)})
	for _, f := range []string{"gen.yaml", "mes.yaml"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := startRunner(t, Config{Dir: dir, XDS: XDSFile, XDSDir: t.TempDir()})
	waitStatus(t, r, 5*time.Second, "mes-a", func(s *Status) bool { return service(s, "mes-a") != nil })

	version("..v2", map[string]string{"gen.yaml": generatorYAML, "mes.yaml": tcpMES("mes-b", 4000, 9001)})
	waitStatus(t, r, 5*time.Second, "mes-b replaced mes-a", func(s *Status) bool {
		return service(s, "mes-b") != nil && service(s, "mes-a") == nil
	})
}

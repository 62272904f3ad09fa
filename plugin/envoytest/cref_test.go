package envoytest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
)

// The C reference module is only a fair floor for the filter if it really
// does the filter's work in Envoy: pick the cluster through the cluster
// header and a route refresh (a request without the header is routed),
// count, and set the decision metadata the access log reads.
func TestCReferenceModuleDoesTheFiltersWork(t *testing.T) {
	envoyBin := testenv.Envoy(t)
	cc, err := exec.LookPath("cc")
	testenv.Require(t, err == nil, "a C compiler (cc) on PATH")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	modDir := t.TempDir()
	if _, err := BuildCReference(ctx, cc, "", testenv.RepoRoot(), modDir, false); err != nil {
		t.Fatal(err)
	}
	if _, err := BuildCReference(ctx, cc, "", testenv.RepoRoot(), t.TempDir(), true); err != nil {
		t.Fatalf("lean variant: %v", err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "upstream")
	}))
	defer up.Close()

	dir := t.TempDir()
	accessLog := filepath.Join(dir, "access.log")
	logs := &testenv.SyncBuffer{}
	env, err := Start(ctx, dir, Options{Envoy: envoyBin, ModuleDir: modDir, Flavor: DynamicModule,
		Clusters:  []Cluster{{Name: "mes_http", Addr: strings.TrimPrefix(up.URL, "http://")}},
		AccessLog: accessLog, Log: logs})
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	defer env.Stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+env.Listener+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "svc-7.extsvc.mesh.local"
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "upstream" {
		t.Fatalf("without a client cluster header: %d %q (the module must pick the cluster)", resp.StatusCode, body)
	}
	// Envoy prefixes a module's counters with its metrics namespace.
	if stats, err := env.Stats(ctx, "meshext_allowed"); err != nil || !strings.Contains(stats, "meshext_allowed: 1\n") {
		t.Fatalf("counter meshext_allowed: %q, %v; want 1", stats, err)
	}
	WaitForFile(t, accessLog, "200 Allow svc-7 mesh-default")
}

package envoyproc

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
)

// A static listener on an ephemeral port and admin on 127.0.0.1:0: the
// real addresses come back through --admin-address-path and /listeners.
const testBootstrap = `
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}
static_resources:
  listeners:
  - name: probe
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: probe
          cluster: sink
  clusters:
  - name: sink
    type: STATIC
    load_assignment: {cluster_name: sink, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}}]}]}
`

func TestStartReadsAdminAndStops(t *testing.T) {
	readyCalls := 0
	p := StartT(t, Options{Bootstrap: []byte(testBootstrap), LogLevel: "warning",
		Ready: func(*Proc) bool { readyCalls++; return true }})
	if p.Admin == "" || strings.HasSuffix(p.Admin, ":0") {
		t.Fatalf("admin address %q", p.Admin)
	}
	if readyCalls != 1 {
		t.Errorf("Ready called %d times, want 1", readyCalls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ls, err := p.Listeners(ctx)
	if err != nil || ls["probe"] == "" || strings.HasSuffix(ls["probe"], ":0") {
		t.Fatalf("listeners %v, %v", ls, err)
	}
	if v, err := p.StatInt(ctx, "cluster_manager.active_clusters"); err != nil || v != 1 {
		t.Errorf("cluster_manager.active_clusters = %d, %v; want 1", v, err)
	}
	if v, err := p.Stat("no.such.stat"); err != nil || v != "" {
		t.Errorf("absent stat = %q, %v; want empty", v, err)
	}
	if v := p.StatValue("cluster_manager.active_clusters"); v != "1" {
		t.Errorf("StatValue(cluster_manager.active_clusters) = %q, want 1", v)
	}
	if dump, err := p.ConfigDump(""); err != nil || !strings.Contains(dump, `"probe"`) {
		t.Errorf("config_dump lacks the probe listener (err %v)", err)
	}
	if _, err := p.Get("/no-such-admin-path"); err == nil {
		t.Error("a 404 admin path gave no error")
	}
	if CPU, err := CPUTicks(p.Pid()); err != nil || CPU < 0 {
		t.Errorf("CPUTicks = %d, %v", CPU, err)
	}
	if RSSMB(p.Pid()) <= 0 {
		t.Error("RSSMB of a running Envoy is 0")
	}
	p.Stop()
	if p.Alive() {
		t.Fatal("Envoy alive after Stop")
	}
	p.Stop() // twice is fine
}

func TestStartReportsABadBootstrap(t *testing.T) {
	o := Options{Bootstrap: []byte("static_resources: {clusters: [{name: x, type: NO_SUCH_TYPE}]}\n"),
		WorkDir: t.TempDir(), ReadyTimeout: 20 * time.Second}
	o.Bin = testenv.Envoy(t)
	p, err := Start(o)
	if err == nil {
		p.Stop()
		t.Fatal("Envoy started on an invalid bootstrap")
	}
	if !strings.Contains(err.Error(), "exited at start") || !strings.Contains(err.Error(), "NO_SUCH_TYPE") {
		t.Errorf("error does not say why: %v", err)
	}
}

func TestStartNeedsABootstrap(t *testing.T) {
	if _, err := Start(Options{Bin: "/bin/true", WorkDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "Bootstrap") {
		t.Errorf("err = %v, want one naming the missing bootstrap", err)
	}
}

func TestValidate(t *testing.T) {
	bin := testenv.Envoy(t)
	dir := t.TempDir()
	good, bad := dir+"/good.yaml", dir+"/bad.yaml"
	if err := os.WriteFile(good, []byte(testBootstrap), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("static_resources: {clusters: [{name: x, type: NO_SUCH_TYPE}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := Validate(bin, good); err != nil {
		t.Errorf("valid bootstrap refused: %v\n%s", err, out)
	}
	if out, err := Validate(bin, bad); err == nil || !strings.Contains(out, "NO_SUCH_TYPE") {
		t.Errorf("invalid bootstrap: err %v, output %q; want an error naming NO_SUCH_TYPE", err, out)
	}
}

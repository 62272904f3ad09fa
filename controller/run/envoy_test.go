package run

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/xds"
	"github.com/meshext/meshext/controller/xds/envoytest"

	"github.com/meshext/meshext/e2e/testnet"
)

const envoyWait = 15 * time.Second

// bootstrap renders the bootstrap `meshext bootstrap` would write, with the
// admin port moved to 0 so parallel tests never collide.
func bootstrap(t *testing.T, o render.BootstrapOptions) string {
	t.Helper()
	b, err := render.Bootstrap(o)
	if err != nil {
		t.Fatal(err)
	}
	// Port 0: Envoy picks one and --admin-address-path tells.
	b.Admin.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 0}
	j, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

// TestEnvoyFollowsDropDir is the live-reload acceptance test: real Envoys on
// file drops, on delta ADS and on state-of-the-world ADS follow changes in the drop directory; a
// broken file leaves the previous config in Envoy; a broken secret takes out
// only the MeshExternalService that uses it.
func TestEnvoyFollowsDropDir(t *testing.T) {
	t.Parallel()
	dir, state, out := t.TempDir(), t.TempDir(), t.TempDir()
	dropWrite(t, dir, "gen.yaml", generatorYAML)
	outPort, echoPort := testnet.FreePort(t), testnet.EchoServer(t)
	dropWrite(t, dir, "dp-file.yaml", dataplaneWithOutbound("dp-file", testnet.FreePort(t), outPort, "mes-a"))
	dropWrite(t, dir, "dp-ads.yaml", dataplaneYAML("dp-ads", testnet.FreePort(t)))
	dropWrite(t, dir, "dp-sotw.yaml", dataplaneYAML("dp-sotw", testnet.FreePort(t)))
	dropWrite(t, dir, "a.yaml", tcpMES("mes-a", 4000, echoPort))
	dropWrite(t, dir, "d.yaml", tlsMES("mes-d", 4003, 9004, "ca-d"))
	dropWrite(t, dir, "ca-d.yaml", secretYAML("ca-d", newCAPEM(t)))
	dropWrite(t, dir, "e.yaml", tlsMES("mes-e", 4004, 9005, "ca-e"))
	dropWrite(t, dir, "ca-e.yaml", secretYAML("ca-e", newCAPEM(t)))

	// ADS on the default unix socket in the state directory.
	r, _ := startRunner(t, Config{Dir: dir, StateDir: state, XDS: XDSBoth, XDSDir: out})

	fileNode, adsNode := "default.dp-file", "default.dp-ads"
	fileEnvoy := envoytest.Start(t, bootstrap(t, render.BootstrapOptions{
		NodeID: fileNode, XDS: render.XDSFile, XDSDir: xds.NodeDir(out, fileNode)}))
	adsEnvoy := envoytest.Start(t, bootstrap(t, render.BootstrapOptions{
		NodeID: adsNode, XDS: render.XDSADS, ADSAddress: r.ADSAddr(), Delta: true}))
	sotwEnvoy := envoytest.Start(t, bootstrap(t, render.BootstrapOptions{
		NodeID: "default.dp-sotw", XDS: render.XDSADS, ADSAddress: r.ADSAddr()}))
	envoys := map[string]*envoytest.Envoy{"file": fileEnvoy, "delta ads": adsEnvoy, "sotw ads": sotwEnvoy}

	// Kuma's destination names (controller/names), with each service's match.port.
	matchPorts := map[string]int{"mes-a": 4000, "mes-b": 4001, "mes-c": 4002, "mes-d": 4003, "mes-e": 4004}
	cluster := func(name string) string { return fmt.Sprintf("default_%s__default_extsvc_%d", name, matchPorts[name]) }
	want := func(what string, ok func(c *envoytest.Config) bool) map[string]*envoytest.Config {
		t.Helper()
		got := map[string]*envoytest.Config{}
		for mode, e := range envoys {
			got[mode] = e.WaitConfig(t, envoyWait, mode+": "+what, ok)
		}
		return got
	}
	has := func(c *envoytest.Config, services ...string) bool {
		for _, s := range services {
			if _, ok := c.Clusters[cluster(s)]; !ok {
				return false
			}
		}
		return true
	}

	cfg := want("initial services with their CA secrets", func(c *envoytest.Config) bool {
		return has(c, "mes-a", "mes-d", "mes-e") && c.Secrets[names.SecretCASecret("default", "ca-d")] != "" &&
			c.Secrets[names.SecretCASecret("default", "ca-e")] != "" && len(c.Listeners) > 0
	})
	// The delivered config carries traffic: outbound listener -> mes-a -> echo.
	outAddr := fmt.Sprintf("127.0.0.1:%d", outPort)
	testnet.EchoThrough(t, outAddr, "ping through envoy\n", envoyWait)
	secretEVersion := map[string]string{}
	for mode, c := range cfg {
		secretEVersion[mode] = c.Secrets[names.SecretCASecret("default", "ca-e")]
	}

	// A change arrives.
	dropWrite(t, dir, "b.yaml", tcpMES("mes-b", 4001, 9002))
	want("mes-b added", func(c *envoytest.Config) bool { return has(c, "mes-b") })

	// A broken file leaves the previous config: mes-a stays while the change
	// made alongside (mes-c) still arrives.
	dropWrite(t, dir, "a.yaml", "type: MeshExternalService\nname: mes-a\nspec: {match: [\n")
	dropWrite(t, dir, "c.yaml", tcpMES("mes-c", 4002, 9003))
	want("mes-c added, mes-a kept", func(c *envoytest.Config) bool { return has(c, "mes-a", "mes-b", "mes-c") })
	if st := r.Status(); !hasProblem(&st, "a.yaml") {
		t.Errorf("status should report the broken a.yaml: %v", st.Problems)
	}
	testnet.EchoThrough(t, outAddr, "ping through envoy\n", envoyWait) // mes-a still carries traffic

	// A broken secret (not a certificate) breaks only mes-d.
	dropWrite(t, dir, "ca-d.yaml", secretYAML("ca-d", []byte("this is not a PEM certificate")))
	cfg = want("mes-d gone, everything else kept", func(c *envoytest.Config) bool {
		_, d := c.Clusters[cluster("mes-d")]
		return !d && has(c, "mes-a", "mes-b", "mes-c", "mes-e")
	})
	for mode, c := range cfg {
		if v := c.Secrets[names.SecretCASecret("default", "ca-e")]; v != secretEVersion[mode] {
			t.Errorf("%s: mes-e's secret changed (%q -> %q) when only ca-d broke", mode, secretEVersion[mode], v)
		}
	}
	st := r.Status()
	if d := service(&st, "mes-d"); d == nil || d.Broken == "" {
		t.Errorf("status should show mes-d broken: %+v", d)
	}
	for _, name := range []string{"mes-a", "mes-b", "mes-c", "mes-e"} {
		if s := service(&st, name); s == nil || s.Broken != "" {
			t.Errorf("%s should be served: %+v", name, s)
		}
	}

	// Rotating a CA reaches Envoy as a new secret version; mes-e's cluster
	// is not rebuilt.
	clusterEVersion := map[string]string{}
	for mode, c := range cfg {
		clusterEVersion[mode] = c.Clusters[cluster("mes-e")]
	}
	dropWrite(t, dir, "ca-e.yaml", secretYAML("ca-e", newCAPEM(t)))
	for mode, e := range envoys {
		c := e.WaitConfig(t, envoyWait, mode+": ca-e rotated", func(c *envoytest.Config) bool {
			v := c.Secrets[names.SecretCASecret("default", "ca-e")]
			return v != "" && v != secretEVersion[mode]
		})
		if v := c.Clusters[cluster("mes-e")]; v != clusterEVersion[mode] {
			t.Errorf("%s: mes-e's cluster re-delivered on CA rotation: version %q -> %q", mode, clusterEVersion[mode], v)
		}
	}

	// Fixing the secret brings mes-d back.
	dropWrite(t, dir, "ca-d.yaml", secretYAML("ca-d", newCAPEM(t)))
	want("mes-d back", func(c *envoytest.Config) bool { return has(c, "mes-d") })

	// Envoy never had to reject anything we sent.
	for mode, e := range envoys {
		for _, stat := range []string{"cluster_manager.cds.update_rejected", "listener_manager.lds.update_rejected"} {
			if v, err := e.Stat(stat); err != nil || v != "0" {
				t.Errorf("%s: %s = %q (%v)", mode, stat, v, err)
			}
		}
		if log := e.Log(); strings.Contains(log, "rejected") {
			t.Errorf("%s: Envoy log mentions a rejection:\n%s", mode, lastLines(log, 20))
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestEnvoyReadsProtoDrops: with --xds-format pb every file of the drop is
// binary protobuf (.pb), and a real Envoy bootstrapped for it loads the
// clusters, the listeners, a Secret's CA by SDS and an HTTP service's route
// table by RDS, carries traffic, and follows an edit.
func TestEnvoyReadsProtoDrops(t *testing.T) {
	t.Parallel()
	dir, state, out := t.TempDir(), t.TempDir(), t.TempDir()
	dropWrite(t, dir, "gen.yaml", generatorYAML)
	outPort, echoPort := testnet.FreePort(t), testnet.EchoServer(t)
	const node = "default.dp-pb"
	dropWrite(t, dir, "dp.yaml", dataplaneWithOutbound("dp-pb", testnet.FreePort(t), outPort, "mes-a"))
	dropWrite(t, dir, "a.yaml", tcpMES("mes-a", 4000, echoPort))
	dropWrite(t, dir, "d.yaml", tlsMES("mes-d", 4003, 9004, "ca-d"))
	dropWrite(t, dir, "ca-d.yaml", secretYAML("ca-d", newCAPEM(t)))
	dropWrite(t, dir, "h.yaml", strings.Replace(tcpMES("mes-h", 4005, 9006), "protocol: tcp", "protocol: http", 1))
	startRunner(t, Config{Dir: dir, StateDir: state, XDS: XDSFile, XDSDir: out, XDSFormat: "pb"})
	e := envoytest.Start(t, bootstrap(t, render.BootstrapOptions{
		NodeID: node, XDS: render.XDSFile, XDSDir: xds.NodeDir(out, node), FileFormat: xds.FormatProto}))

	cluster := func(name string, port int) string { return fmt.Sprintf("default_%s__default_extsvc_%d", name, port) }
	e.WaitConfig(t, envoyWait, "services, the Secret's CA and listeners from .pb files", func(c *envoytest.Config) bool {
		_, a := c.Clusters[cluster("mes-a", 4000)]
		_, d := c.Clusters[cluster("mes-d", 4003)]
		_, h := c.Clusters[cluster("mes-h", 4005)]
		return a && d && h && c.Secrets[names.SecretCASecret("default", "ca-d")] != "" && len(c.Listeners) > 0
	})
	testnet.EchoThrough(t, fmt.Sprintf("127.0.0.1:%d", outPort), "ping through envoy\n", envoyWait)
	// The HTTP service's route table came by RDS from its .pb file.
	route := xds.FormatProto.RoutePath(out, node, cluster("mes-h", 4005))
	if _, err := os.Stat(route); err != nil {
		t.Fatalf("no route file %s: %v", route, err)
	}
	deadline := time.Now().Add(envoyWait)
	for !strings.Contains(e.Text("/config_dump?resource=dynamic_route_configs"), cluster("mes-h", 4005)) {
		if time.Now().After(deadline) {
			t.Fatal("the HTTP service's route table never reached Envoy from its .pb file")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range []string{xds.FormatProto.CDSPath(out, node), xds.FormatProto.LDSPath(out, node),
		xds.FormatProto.SecretFile(xds.SecretDir(out), names.SecretCASecret("default", "ca-d"))} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := os.Stat(xds.CDSPath(out, node)); !os.IsNotExist(err) {
		t.Errorf("a JSON cds file was written in pb mode: %v", err)
	}

	dropWrite(t, dir, "b.yaml", tcpMES("mes-b", 4001, 9002))
	e.WaitConfig(t, envoyWait, "mes-b added", func(c *envoytest.Config) bool {
		_, ok := c.Clusters[cluster("mes-b", 4001)]
		return ok
	})
	for _, stat := range []string{"cluster_manager.cds.update_rejected", "listener_manager.lds.update_rejected"} {
		if v, err := e.Stat(stat); err != nil || v != "0" {
			t.Errorf("%s = %q (%v)", stat, v, err)
		}
	}
}

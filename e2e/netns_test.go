package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/bpf"
	"github.com/meshext/meshext/controller/meshca"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/pki"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/netns"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
)

// TestNetnsSeedCommandsDirect proves the egress topology's plumbing with
// today's direct mode: `meshext run` (its DNS) and the seed Dataplane's
// sidecar Envoy in the workload namespace, the eBPF redirect on its app
// cgroup, the stand-ins in the internet namespace; the workload namespace
// has a route to the internet through the egress namespace (forwarding on),
// since here the sidecar itself connects to the stand-ins. The seed's seven
// commands run unchanged as the workload.
func TestNetnsSeedCommandsDirect(t *testing.T) {
	tp, in := netnsWithStandIns(t, netns.Options{DirectRoute: true})
	// Named like the e2e Dataplane, so meshext run points the redirect at
	// its transparent listener (15101) and at its own DNS server.
	w := tp.AttachWorkload(t, netns.WorkloadOptions{Name: "e2e"})
	m := startMesh(t, seedDropDir(t), meshOpts{nodeID: "default.e2e", hostsFile: in.HostsFile, systemCA: in.CAFile,
		workload: w, redirectBPFFS: w.BPFFS})
	m.waitListener(t, "127.0.0.1:15101")
	waitRedirect(t, m, w, "127.0.0.1:15101")
	runSeedCommands(t, asWorkload(w))
}

// netnsWithStandIns builds the namespaces with the stand-ins running and
// checks that the seed's clients are there.
func netnsWithStandIns(t *testing.T, o netns.Options) (*netns.Topology, *netns.Internet) {
	t.Helper()
	tp := netns.New(t, o)
	in := tp.StartInternet(t)
	for _, tool := range []string{"nc", "curl", "grpcurl"} {
		testenv.Tool(t, tool)
	}
	return tp, in
}

// waitRedirect waits until meshext run has pointed w's eBPF redirect at
// the transparent listener proxy and at its own DNS server.
func waitRedirect(t *testing.T, m *meshEnv, w *netns.Workload, proxy string) {
	t.Helper()
	eventually(t, 20*time.Second, "meshext run updates the redirect of "+w.Name, func() error {
		cfg, err := w.Redirect.Config()
		if err != nil {
			return err
		}
		want := []bpf.VIPRoute{{CIDR: bpf.DefaultVIPCIDR, Proxy: netip.MustParseAddrPort(proxy)}}
		if len(cfg.VIPs) != 1 || cfg.VIPs[0] != want[0] || cfg.DNS.String() != m.dnsAddr {
			return fmt.Errorf("config %+v, want VIPs %v and DNS %s", cfg, want, m.dnsAddr)
		}
		return nil
	})
}

// asWorkload runs a command line as w (runSeedCommands' inApp); it must succeed.
func asWorkload(w *netns.Workload) func(t *testing.T, line string) string {
	return func(t *testing.T, line string) string {
		t.Helper()
		out, err := w.Shell(30*time.Second, line)
		require.NoError(t, err, "%s\n%s", line, out)
		return out
	}
}

// Where the egress scenarios put the ZoneEgresses: Envoys in the egress
// namespace, on the address workloads reach it by.
const netnsEgressPort, netnsEgressAdmin = 10002, 9903

// netnsMeshDrop is a drop directory with the seed's services, the Mesh of
// examples-egress/ (builtin CA, zoneEgress) and n ZoneEgresses egress-<i> on
// netns.EgressAddr, ports netnsEgressPort+i-1, admin ports netnsEgressAdmin+i-1.
func netnsMeshDrop(t *testing.T, drop string, n int) {
	t.Helper()
	copyFile(t, filepath.Join(testenv.RepoRoot(), "examples-egress", "mesh.yaml"), filepath.Join(drop, "mesh.yaml"))
	for i := 1; i <= n; i++ {
		addr := netip.AddrPortFrom(netns.EgressAddr, uint16(netnsEgressPort+i-1)).String()
		writeFile(t, filepath.Join(drop, fmt.Sprintf("egress-%d.yaml", i)), egressZone(fmt.Sprintf("egress-%d", i), addr, netnsEgressAdmin+i-1))
	}
}

// netnsADS is where meshext run serves ADS in the netns scenarios: the
// workload's address on the egress link, over mTLS. A ZoneEgress is another
// host in a real zone: it reaches its control plane over the network with a
// client certificate naming its node (and gets only its own keys), never
// through a shared directory.
func netnsADS(t *testing.T) string {
	return netip.AddrPortFrom(netns.WorkloadAddr, uint16(testnet.FreePort(t))).String()
}

// startZoneEgresses bootstraps the ZoneEgresses of netnsMeshDrop named
// (egress-<i>: node .egress-<i>, its admin port) with m's delivery flags and
// starts their Envoys, side by side, in tp's egress namespace, where Envoy
// resolves the external names through that namespace's resolver (the
// internet's DNS).
func (m *meshEnv) startZoneEgresses(t *testing.T, tp *netns.Topology, egresses ...string) map[string]*envoyproc.Proc {
	t.Helper()
	type started struct {
		name string
		p    *envoyproc.Proc
		err  error
		took time.Duration
	}
	done := make(chan started, len(egresses))
	for _, name := range egresses {
		i, err := strconv.Atoi(strings.TrimPrefix(name, "egress-"))
		require.NoError(t, err, "a ZoneEgress of netnsMeshDrop: egress-<i>")
		node := names.ZoneEgressNodeID(name)
		dir := filepath.Join(m.dir, names.PathElement(node))
		require.NoError(t, os.MkdirAll(dir, 0o700))
		boot := m.bootstrap(t, dir, "--zone-egress", name, "--admin-port", strconv.Itoa(netnsEgressAdmin+i-1))
		o := envoyproc.Pinned(testenv.Envoy(t), boot, dir, "envoy", envoyModuleEnv(t))
		tp.Egress.Envoy(&o)
		go func() {
			start := time.Now()
			p, err := launchEnvoy(t, o, node)
			done <- started{name, p, err, time.Since(start)}
		}()
	}
	out := map[string]*envoyproc.Proc{}
	var errs []error
	for range egresses {
		s := <-done
		if s.err != nil {
			errs = append(errs, s.err)
			continue
		}
		out[s.name] = s.p
		t.Logf("ZoneEgress %s: Envoy ready %.1fs after its start", s.name, s.took.Seconds())
	}
	require.NoError(t, errors.Join(errs...))
	return out
}

// TestNetnsSeedCommandsThroughEgress is issue 13's acceptance path: mesh
// mTLS on (examples-egress/mesh.yaml, Kuma's builtin CA), `meshext run` and
// the seed Dataplane's sidecar Envoy in the workload namespace (eBPF
// redirect, meshext's DNS), a ZoneEgress Envoy in the egress namespace on
// 192.0.2.1 fed over ADS (mTLS TCP to meshext run on 192.0.2.2), the
// stand-ins in the internet namespace. The workload namespace has a route
// only to the egress: the seed's seven commands, unchanged, work from the
// workload through the egress (whose access log names the workload's
// SPIFFE ID for each service), and a direct connection to each stand-in
// fails although meshext's DNS knows their addresses.
func TestNetnsSeedCommandsThroughEgress(t *testing.T) {
	tp, in := netnsWithStandIns(t, netns.Options{})
	w := tp.AttachWorkload(t, netns.WorkloadOptions{Name: "e2e"})
	drop := seedDropDir(t)
	netnsMeshDrop(t, drop, 1)
	// No MeshTrafficPermission: every identity of the mesh passes (Kuma's default).
	m := startMesh(t, drop, meshOpts{nodeID: "default.e2e", hostsFile: in.HostsFile, systemCA: in.CAFile,
		workload: w, redirectBPFFS: w.BPFFS, adsTCP: netnsADS(t), ownResolver: true})
	egress := m.startZoneEgresses(t, tp, "egress-1")["egress-1"]
	m.waitListener(t, "127.0.0.1:15101")
	waitRedirect(t, m, w, "127.0.0.1:15101")

	runSeedCommands(t, asWorkload(w))

	t.Run("each service went through the egress as spiffe://default/e2e", func(t *testing.T) {
		for _, s := range []struct {
			name string
			port uint32
		}{{"mes-tcp", 4242}, {"mes-tcp-tls", 4243}, {"mes-tcp-mtls", 4244}, {"mes-http", 80}, {"mes-https", 80}, {"mes-grpc", 9000}, {"mes-grpcs", 9001}} {
			want := "sni=" + names.SNI(s.name, "default", "mes", s.port)
			eventually(t, 10*time.Second, "egress access log of "+s.name, func() error {
				for _, line := range strings.Split(egress.LogText(), "\n") {
					if strings.Contains(line, want+" ") && strings.Contains(line, `peer="spiffe://default/e2e,`) {
						return nil
					}
				}
				return fmt.Errorf("no line with %s and the workload's identity", want)
			})
		}
	})
	t.Run("no bypass: the workload reaches no stand-in directly", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, tp.Workload.CheckNoRoute(ctx, in.Endpoints()))
		// Neither as the workload by name (meshext's DNS answers the
		// stand-ins' real addresses from its hosts file).
		// curl's exit code 7: resolved, could not connect (6 would be DNS).
		out, err := w.Shell(10*time.Second, "curl -sS --max-time 3 http://httpbin.org/get")
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, out)
		assert.Equal(t, 7, exit.ExitCode(), "curl exit code; output: %s", out)
	})
}

// netnsDataplane is a Dataplane of the workload namespace reached only by
// the eBPF redirect: its transparent listener on 127.0.0.1:redirectPort,
// its SPIFFE ID spiffe://default/<name>.
func netnsDataplane(name string, redirectPort int) string {
	return fmt.Sprintf(`type: Dataplane
mesh: default
name: %s
networking:
  address: 127.0.0.1
  transparentProxying: {redirectPortOutbound: %d}
  inbound:
    - port: %d
      tags:
        kuma.io/service: %s
`, name, redirectPort, redirectPort+1000, name)
}

// seedServices are the seed's services with their ports and protocols.
var seedServices = []struct {
	name string
	port uint32
	tcp  bool // else HTTP or gRPC
	grpc bool
}{
	{"mes-tcp", 4242, true, false}, {"mes-tcp-tls", 4243, true, false}, {"mes-tcp-mtls", 4244, true, false},
	{"mes-http", 80, false, false}, {"mes-https", 80, false, false},
	{"mes-grpc", 9000, false, true}, {"mes-grpcs", 9001, false, true},
}

// checkRefusedAtEgress calls every seed service as w, the seed's clients
// by the generated names, and wants each refused at the egress: HTTP 403
// whose body says deniedBy, gRPC status 7 (PermissionDenied), TCP closed
// without an echo; for TCP the egress's access log (egressLogs) names w's
// identity and the network RBAC denial.
func checkRefusedAtEgress(t *testing.T, w *netns.Workload, deniedBy string, egressLogs func() string) {
	t.Helper()
	for _, s := range seedServices {
		t.Run(w.Name+" "+s.name, func(t *testing.T) {
			t.Parallel()
			host := s.name + ".svc.meshext.local"
			switch {
			case s.tcp:
				out, _ := w.Shell(20*time.Second, fmt.Sprintf("echo 'echo this' | nc -N -w 5 %s %d", host, s.port))
				assert.Empty(t, out, "connected, then closed without an echo")
				sni := "sni=" + names.SNI(s.name, "default", "mes", s.port) + " "
				eventually(t, 10*time.Second, "the egress closed "+w.Name+"'s connection by network RBAC", func() error {
					for _, line := range strings.Split(egressLogs(), "\n") {
						if strings.Contains(line, sni) && strings.Contains(line, `peer="spiffe://default/`+w.Name+",") &&
							strings.Contains(line, "closed=rbac_access_denied") {
							return nil
						}
					}
					return fmt.Errorf("no line with %s, %s's identity and rbac_access_denied", sni, w.Name)
				})
			case s.grpc:
				out, err := w.Shell(20*time.Second, fmt.Sprintf("grpcurl -plaintext %s:%d list", host, s.port))
				assert.Error(t, err, out)
				assert.Contains(t, out, "code = PermissionDenied", "gRPC status 7")
			default:
				out, err := w.Shell(20*time.Second, fmt.Sprintf("curl -sS --max-time 10 -w '\\n%%{http_code}' http://%s/get", host))
				require.NoError(t, err, out)
				assert.True(t, strings.HasSuffix(out, "\n403"), "HTTP 403: %s", out)
				assert.Contains(t, out, deniedBy)
			}
		})
	}
}

// TestNetnsEgressAuthorization: two workloads in the workload namespace
// (Dataplanes web and batch: two app cgroups with their own redirect and
// sidecar Envoy), two ZoneEgress Envoys in the egress namespace. A Kuma
// `rules` MeshTrafficPermission allowing spiffe://default/web lets web's
// seed commands through and refuses batch's at the egress for every
// protocol; a client skipping its sidecar with another CA's certificate or
// none is refused at the egress; one egress killed, traffic continues;
// both, nothing leaves; one restarted, traffic resumes; and with no policy
// and routing.defaultForbidMeshExternalServiceAccess nobody passes.
func TestNetnsEgressAuthorization(t *testing.T) {
	tp, in := netnsWithStandIns(t, netns.Options{})
	web := tp.AttachWorkload(t, netns.WorkloadOptions{Name: "web"})
	batch := tp.AttachWorkload(t, netns.WorkloadOptions{Name: "batch"})
	drop := seedServicesDropDir(t)
	netnsMeshDrop(t, drop, 2)
	writeFile(t, filepath.Join(drop, "web.yaml"), netnsDataplane("web", 15101))
	writeFile(t, filepath.Join(drop, "batch.yaml"), netnsDataplane("batch", 15102))
	writeFile(t, filepath.Join(drop, "mtp.yaml"), allowWebRules)
	m := startMesh(t, drop, meshOpts{nodeID: "default.web", hostsFile: in.HostsFile, systemCA: in.CAFile,
		workload: web, redirectBPFFS: web.BPFFS, adsTCP: netnsADS(t), ownResolver: true})
	batchEnvoy := m.startSidecar(t, "default.batch", batch)
	egresses := m.startZoneEgresses(t, tp, "egress-1", "egress-2")
	outer := t
	egressLogs := func() string { return egresses["egress-1"].LogText() + egresses["egress-2"].LogText() }
	m.waitListener(t, "127.0.0.1:15101")
	waitEnvoyListener(t, batchEnvoy, "127.0.0.1:15102")
	waitRedirect(t, m, web, "127.0.0.1:15101")
	waitRedirect(t, m, batch, "127.0.0.1:15102")

	t.Run("rules: web passes", func(t *testing.T) { runSeedCommands(t, asWorkload(web)) })
	t.Run("a sidecar certificate rotated during an open connection does not break it", func(t *testing.T) {
		out, err := web.Shell(10*time.Second, "getent ahostsv4 mes-tcp.svc.meshext.local")
		require.NoError(t, err, out)
		vip := strings.Fields(out)[0]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn := web.Dial(t, ctx, "tcp4", net.JoinHostPort(vip, "4242"))
		r := bufio.NewReader(conn)
		require.NoError(t, echoOnce(conn, r, "before"))
		before := identitySerial(t, m.state, "default.web")
		// New tags: meshext run issues web a new certificate at once.
		writeFile(t, filepath.Join(drop, "web.yaml"), netnsDataplane("web", 15101)+"        version: v2\n")
		eventually(t, 30*time.Second, "web's certificate re-issued and used by new connections", func() error {
			if s := identitySerial(t, m.state, "default.web"); s == before {
				return fmt.Errorf("serial still %s", s)
			}
			out, err := web.Shell(20*time.Second, "echo new | nc -N -w 5 mes-tcp.svc.meshext.local 4242")
			if err != nil || out != "new\n" {
				return fmt.Errorf("new connection: %q %v", out, err)
			}
			if !strings.Contains(egressLogs(), "kuma://version/v2") {
				return fmt.Errorf("no connection with the new certificate (kuma://version/v2) at the egresses yet")
			}
			return nil
		})
		require.NoError(t, echoOnce(conn, r, "after"), "the connection opened before the rotation still works")
	})
	t.Run("rules: batch is refused at the egress", func(t *testing.T) {
		checkRefusedAtEgress(t, batch, `from "batch" denied by MeshTrafficPermission rules "allow-web"`, egressLogs)
	})
	t.Run("a client with another CA's certificate, or none, is refused at the egress", func(t *testing.T) {
		ca, err := pki.LoadCA(meshca.CADir(m.state, "default", "ca-1"))
		require.NoError(t, err)
		addr := netip.AddrPortFrom(netns.EgressAddr, netnsEgressPort).String()
		checkEgressClientCertificates(t, tp.Workload.DialContext, addr, ca)
	})
	t.Run("two egresses, one killed: traffic continues; both: nothing leaves; one restarted: resumes", func(t *testing.T) {
		tr := egressTraffic{
			get: func() (int, string) {
				out, err := web.Shell(20*time.Second, "curl -sS --max-time 10 -w '\\n%{http_code}' http://mes-http.svc.meshext.local/get")
				i := strings.LastIndex(out, "\n")
				code, cerr := strconv.Atoi(out[i+1:])
				if err != nil || cerr != nil {
					return 0, fmt.Sprintf("%v: %s", err, out)
				}
				return code, out[:max(i, 0)]
			},
			echo: func(line string) error {
				out, err := web.Shell(20*time.Second, fmt.Sprintf("echo '%s' | nc -N -w 5 mes-tcp.svc.meshext.local 4242", line))
				if err != nil || out != line+"\n" {
					return fmt.Errorf("echo %q: %q %v", line, out, err)
				}
				return nil
			},
		}
		checkEgressFailover(t, tr, func(name string) { egresses[name].Kill() }, func(name string) {
			// Restarted for the whole test: on the subtest's t it would stop
			// when the subtest ends.
			maps.Copy(egresses, m.startZoneEgresses(outer, tp, name))
		})
	})
	t.Run("defaultForbidMeshExternalServiceAccess without a policy: nobody passes", func(t *testing.T) {
		require.NoError(t, os.Remove(filepath.Join(drop, "mtp.yaml")))
		mesh, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "examples-egress", "mesh.yaml"))
		require.NoError(t, err)
		writeFile(t, filepath.Join(drop, "mesh.yaml"), string(mesh)+"  defaultForbidMeshExternalServiceAccess: true\n")
		const deniedBy = "denied by mesh default (routing.defaultForbidMeshExternalServiceAccess)"
		eventually(t, 20*time.Second, "web denied by the mesh default", func() error {
			out, _ := web.Shell(20*time.Second, "curl -sS --max-time 10 http://mes-http.svc.meshext.local/get")
			if !strings.Contains(out, deniedBy) {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
		// Only egress-2 runs (egress-1 is down since the failover), its log
		// new since its restart: the TCP denials found are this policy's.
		logs := func() string { return egresses["egress-2"].LogText() }
		checkRefusedAtEgress(t, web, deniedBy, logs)
		checkRefusedAtEgress(t, batch, deniedBy, logs)
	})
}

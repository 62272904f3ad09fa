package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/bpf/bpftest"
	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/netns"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
)

// meshEnv is one `meshext run` on a drop directory plus one real Envoy fed by
// its file drops, as a user runs them.
type meshEnv struct {
	dir, drop, state, xds string
	nodeID                string
	dnsAddr, statusAddr   string
	// runXDS and bootstrapXDS are the delivery flags of `meshext run` and
	// `meshext bootstrap` (file drops in xds, or ADS).
	runXDS, bootstrapXDS []string
	run                  *netns.Proc
	envoy                *envoyproc.Proc
	client               *http.Client // reaches statusAddr (in the workload's namespace with meshOpts.workload)
}

type meshOpts struct {
	nodeID    string // Envoy node id: "<mesh>.<dataplane>" or "default"
	hostsFile string // --dns-hosts
	systemCA  string // KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH
	stateDir  string // reuse a state dir (restart tests); "" = fresh
	// envoyCgroup, when set, is the cgroup v2 directory Envoy starts in (the
	// eBPF redirect's proxy cgroup); cgroupMount is the cgroup v2 mount.
	envoyCgroup, cgroupMount string
	// redirectBPFFS is meshext run's --redirect-bpffs ("" = off).
	redirectBPFFS string
	// runArgs are extra `meshext run` arguments (e.g. --http-proxy-listen).
	runArgs []string
	// source replaces `--dir DROP` (e.g. --source kubernetes --kubeconfig F).
	source []string
	// ads delivers config over ADS (adsFlags) instead of file drops;
	// delta makes Envoy use incremental (delta) xDS on that stream.
	ads, delta bool
	// envoyArgs are extra Envoy command-line arguments.
	envoyArgs []string
	// workload, when set, runs meshext run in the workload's network
	// namespace and Envoy as its sidecar (namespace and sidecar cgroup);
	// envoyCgroup is then ignored.
	workload *netns.Workload
	// noAccessLog leaves e2eAccessLog out of the drop directory.
	noAccessLog bool
	// adsTCP ("HOST:PORT") serves ADS there over mTLS instead of files:
	// `meshext bootstrap --state-dir` issues each node its client
	// certificate, as for an Envoy on another host (a ZoneEgress).
	adsTCP string
	// ownResolver leaves --upstream-dns out of meshext run: each Envoy's DNS
	// clusters use its own resolver, as an egress in another namespace must
	// (meshext's DNS listens on the workload's loopback).
	ownResolver bool
}

// adsFlags are the `meshext run` and `meshext bootstrap` flags that connect
// an Envoy to meshext run's ADS server, the one place to adapt when the ADS
// transport or its access control changes; dir is the mesh's own directory
// (for a socket or credentials).
func adsFlags(t *testing.T, dir string) (run, bootstrap []string) {
	// The local default transport: an owner-only unix socket (Envoy's pipe).
	addr := "unix:" + filepath.Join(dir, "ads", "ads.sock")
	return []string{"--xds", "ads", "--ads-listen", addr}, []string{"--xds", "ads", "--ads-address", addr}
}

// e2eAccessLog is a MeshAccessLog every test drop gets unless
// meshOpts.noAccessLog (and the egress tests' drops): meshext logs only
// what a MeshAccessLog asks for (Kuma's default), and these tests read the
// decisions (the filter's dynamic metadata; a decision made at render time
// is route metadata), clusters and TLS failure reasons from Envoy's output, and at
// a ZoneEgress the caller's verified URI SANs and why a TCP connection
// closed.
const e2eAccessLog = `type: MeshAccessLog
name: e2e-stdout
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
    - targetRef: {kind: Mesh}
      default:
        backends:
          - type: File
            file:
              path: /dev/stdout
              format:
                type: Plain
                plain: '[%START_TIME%] meshext %DOWNSTREAM_REMOTE_ADDRESS% -> %DOWNSTREAM_LOCAL_ADDRESS% "%REQ(:METHOD)% %REQ(:AUTHORITY)%%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% cluster=%UPSTREAM_CLUSTER% upstream=%UPSTREAM_HOST% flags=%RESPONSE_FLAGS% sni=%REQUESTED_SERVER_NAME% rx=%BYTES_RECEIVED% tx=%BYTES_SENT% ms=%DURATION% tls_failure="%UPSTREAM_TRANSPORT_FAILURE_REASON%" details=%RESPONSE_CODE_DETAILS% authz=%DYNAMIC_METADATA(meshext:action)% policy=%DYNAMIC_METADATA(meshext:policy)% static=%METADATA(ROUTE:meshext:action)%/%METADATA(ROUTE:meshext:policy)% peer="%DOWNSTREAM_PEER_URI_SAN%" closed=%CONNECTION_TERMINATION_DETAILS%'
`

func startMesh(t *testing.T, drop string, o meshOpts) *meshEnv {
	t.Helper()
	bin := meshext(t)
	envoy := testenv.Envoy(t)
	m := &meshEnv{dir: t.TempDir(), drop: drop, nodeID: o.nodeID, client: &http.Client{Timeout: 5 * time.Second}}
	if o.workload != nil {
		m.client = o.workload.HTTPClient(5 * time.Second)
	}
	m.state = o.stateDir
	if m.state == "" {
		m.state = filepath.Join(m.dir, "state")
	}
	m.xds = filepath.Join(m.dir, "xds")
	m.runXDS = []string{"--xds", "file", "--xds-dir", m.xds}
	m.bootstrapXDS = m.runXDS
	if o.ads {
		m.runXDS, m.bootstrapXDS = adsFlags(t, m.dir)
		if o.delta {
			m.bootstrapXDS = append(m.bootstrapXDS, "--delta")
		}
	}
	if o.adsTCP != "" {
		m.runXDS = []string{"--xds", "ads", "--ads-listen", o.adsTCP}
		m.bootstrapXDS = []string{"--xds", "ads", "--ads-address", o.adsTCP, "--state-dir", m.state}
	}
	if !o.noAccessLog && o.source == nil { // another source brings its own policies
		writeFile(t, filepath.Join(drop, "e2e-access-log.yaml"), e2eAccessLog)
	}
	m.dnsAddr = "127.0.0.1:" + strconv.Itoa(testnet.FreePort(t))
	m.statusAddr = "127.0.0.1:" + strconv.Itoa(testnet.FreePort(t))
	m.startRun(t, bin, o)

	if o.ads || o.adsTCP != "" {
		eventually(t, 20*time.Second, "meshext run serves its status", func() error {
			if code, _, err := httpGetWith(m.client, "http://"+m.statusAddr+"/status"); err != nil || code != 200 {
				return fmt.Errorf("%d %v; meshext log: %s", code, err, envoyproc.Tail(m.run.LogPath, 800))
			}
			return nil
		})
	} else {
		nodeDir := filepath.Join(m.xds, m.nodeID)
		eventually(t, 20*time.Second, "meshext run writes "+nodeDir+"/lds.json", func() error {
			if _, err := os.Stat(filepath.Join(nodeDir, "lds.json")); err != nil {
				return fmt.Errorf("%v; meshext log: %s", err, envoyproc.Tail(m.run.LogPath, 800))
			}
			return nil
		})
	}
	bootstrap := m.bootstrap(t, m.dir, "--node", m.nodeID, "--upstream-dns", m.dnsAddr)
	// meshext run renders the meshext dynamic module (--plugin on, stock) on HTTP listeners.
	modEnv := envoyModuleEnv(t)
	envoyArgs := o.envoyArgs
	w := o.workload
	startEnvoy := func() {
		o := envoyproc.Pinned(envoy, bootstrap, m.dir, "envoy", modEnv)
		o.Args = append(o.Args, envoyArgs...)
		if w != nil {
			w.SidecarEnvoy(&o)
		}
		m.envoy = startEnvoyProc(t, o, m.nodeID)
	}
	if w == nil && o.envoyCgroup != "" {
		// Envoy inherits the cgroup; its listener sockets are created there.
		bpftest.InCgroup(t, o.cgroupMount, o.envoyCgroup, startEnvoy)
	} else {
		startEnvoy()
	}
	return m
}

// bootstrap writes an Envoy bootstrap into dir with `meshext bootstrap`,
// m's delivery flags and args (the node: --node or --zone-egress), on a free
// admin port unless args name one.
func (m *meshEnv) bootstrap(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out := filepath.Join(dir, "bootstrap.json")
	if !slices.Contains(args, "--admin-port") {
		args = append(args, "--admin-port", strconv.Itoa(testnet.FreePort(t)))
	}
	res, err := run(t, 30*time.Second, "", meshext(t), append(append(append([]string{"bootstrap"}, m.bootstrapXDS...), args...), "--out", out)...)
	if err != nil {
		t.Fatalf("meshext bootstrap %v: %v\n%s", args, err, res)
	}
	return out
}

// startSidecar starts the Envoy of another Dataplane of m (node
// "<mesh>.<name>") as w's sidecar.
func (m *meshEnv) startSidecar(t *testing.T, node string, w *netns.Workload) *envoyproc.Proc {
	t.Helper()
	dir := filepath.Join(m.dir, names.PathElement(node))
	require.NoError(t, os.MkdirAll(dir, 0o700))
	o := envoyproc.Pinned(testenv.Envoy(t), m.bootstrap(t, dir, "--node", node, "--upstream-dns", m.dnsAddr), dir, "envoy", envoyModuleEnv(t))
	w.SidecarEnvoy(&o)
	return startEnvoyProc(t, o, node)
}

// startEnvoyProc starts an Envoy of the e2e mesh, stopped at cleanup, its
// log printed (and kept in $TMPDIR) when the test failed.
func startEnvoyProc(t *testing.T, o envoyproc.Options, node string) *envoyproc.Proc {
	t.Helper()
	p, err := launchEnvoy(t, o, node)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// launchEnvoy is startEnvoyProc returning the error: safe on another
// goroutine than the test's.
func launchEnvoy(t *testing.T, o envoyproc.Options, node string) (*envoyproc.Proc, error) {
	// Tests read access logs from Envoy's output; Envoy flushes it only
	// every 10 s by default, as long as their bounded waits.
	o.Args = append([]string{"--file-flush-interval-msec", "100"}, o.Args...)
	p, err := envoyproc.Start(o)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- envoy %s log (tail) ---\n%s", node, p.Tail(6000))
			if b, err := os.ReadFile(p.LogPath); err == nil {
				_ = os.WriteFile(filepath.Join(os.TempDir(), "meshext-e2e-"+names.PathElement(node)+"-envoy.log"), b, 0o644)
			}
		}
		p.Stop()
	})
	return p, nil
}

func (m *meshEnv) startRun(t *testing.T, bin string, o meshOpts) {
	t.Helper()
	source := o.source
	if source == nil {
		source = []string{"--dir", m.drop}
	}
	args := append(append(append([]string{"run"}, source...), "--state-dir", m.state), m.runXDS...)
	// Tests never forward DNS beyond loopback: the stand-ins' names come
	// from the hosts file, anything else is REFUSED.
	args = append(args, "--dns-listen", m.dnsAddr, "--dns-upstream", "none", "--status-listen", m.statusAddr, "--debounce", "100ms",
		"--redirect-bpffs", o.redirectBPFFS)
	if !o.ownResolver {
		args = append(args, "--upstream-dns", m.dnsAddr)
	}
	if o.hostsFile != "" {
		args = append(args, "--dns-hosts", o.hostsFile)
	}
	args = append(args, o.runArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	if o.systemCA != "" {
		cmd.Env = append(cmd.Env, "KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH="+o.systemCA)
	}
	if o.workload != nil {
		o.workload.NS.Wrap(cmd)
	}
	m.run = netns.StartCmd(t, "meshext-run", cmd)
}

// envoyLog is everything Envoy printed so far, access logs included.
func (m *meshEnv) envoyLog() string {
	b, _ := os.ReadFile(m.envoy.LogPath)
	return string(b)
}

// waitListener waits until Envoy serves a listener bound to addr (e.g. 127.0.0.1:18080).
func (m *meshEnv) waitListener(t *testing.T, addr string) {
	t.Helper()
	waitEnvoyListener(t, m.envoy, addr)
}

// waitEnvoyListener waits until p serves a listener bound to addr.
func waitEnvoyListener(t *testing.T, p *envoyproc.Proc, addr string) {
	t.Helper()
	eventually(t, 20*time.Second, "Envoy listener on "+addr, func() error {
		body, err := p.Get("/listeners")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "::"+addr) && !strings.Contains(body, addr) {
			return fmt.Errorf("not in /listeners: %s", body)
		}
		return nil
	})
}

// status fetches meshext run's /status JSON.
func (m *meshEnv) status(t *testing.T) string {
	t.Helper()
	code, body, err := httpGetWith(m.client, "http://"+m.statusAddr+"/status")
	if err != nil || code != 200 {
		t.Fatalf("GET /status: %d %v", code, err)
	}
	return body
}

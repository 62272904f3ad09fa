package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/e2e/kubetest"
	"github.com/meshext/meshext/e2e/netns"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
	"github.com/meshext/meshext/e2e/upstream"
)

// Leader-election timing of the replicas in these tests (a dead leader is
// replaced within kubeLease plus kubeRetry).
const (
	kubeLease  = 4 * time.Second
	kubeRenew  = 3 * time.Second
	kubeRetry  = 500 * time.Millisecond
	kubeGrace  = 6 * time.Second // --vip-release-after
	kubeTimout = 60 * time.Second
)

// kubeSource is `meshext run`'s source flags for a replica named id, with
// the service account's kubeconfig (the RBAC of deploy/kubernetes/rbac.yaml).
func kubeSource(kubeconfig, id string) []string {
	return []string{"--source", "kubernetes", "--kubeconfig", kubeconfig, "--leader-id", id,
		"--leader-lease-duration", kubeLease.String(), "--leader-renew-deadline", kubeRenew.String(),
		"--leader-retry-period", kubeRetry.String(), "--vip-release-after", kubeGrace.String()}
}

// kubeDataplane is a Dataplane custom resource in namespace default with
// the networking of e2eDataplane (the seed test's) plus outbounds.
func kubeDataplane(name string, outbounds map[int]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: kuma.io/v1alpha1
kind: Dataplane
metadata:
  name: %s
  namespace: default
  labels: {kuma.io/mesh: default}
spec:
`, name)
	networking := e2eDataplane[strings.Index(e2eDataplane, "networking:"):]
	if name != "e2e" {
		networking = "networking:\n  address: 127.0.0.1\n  outbound:\n"
	}
	for _, l := range strings.Split(strings.TrimRight(networking, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	for port := 22000; port < 22200; port++ {
		if mes, ok := outbounds[port]; ok {
			fmt.Fprintf(&b, "      - port: %d\n        backendRef: {kind: MeshExternalService, name: %s}\n", port, mes)
		}
	}
	return b.String()
}

// kubeTCPService is a plain TCP MeshExternalService to addr (HOST:PORT).
func kubeTCPService(name, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata:
  name: %s
  namespace: kuma-system
  labels: {kuma.io/mesh: default}
spec:
  match: {type: HostnameGenerator, port: 80, protocol: tcp}
  endpoints:
  - address: %s
    port: %s
`, name, host, port)
}

// mesTable is `kubectl get meshexternalservices -n kuma-system` by name: HOSTNAME, VIP.
func mesTable(t *testing.T, c *kubetest.Cluster) map[string][2]string {
	t.Helper()
	out := c.MustKubectl(t, "get", "meshexternalservices", "-n", "kuma-system")
	rows := table(out)
	require.Equal(t, []string{"NAME", "HOSTNAME", "VIP", "AGE"}, rows[0], out)
	got := map[string][2]string{}
	for _, r := range rows[1:] {
		got[r[0]] = [2]string{r[1], r[2]}
	}
	return got
}

func leaseHolder(c *kubetest.Cluster) string {
	out, err := c.Kubectl("get", "lease", "meshext-leader", "-n", "kuma-system", "-o", "jsonpath={.spec.holderIdentity}")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// ipamLedger is the VIP ledger the leader keeps in ConfigMap meshext-ipam.
func ipamLedger(t *testing.T, c *kubetest.Cluster) map[string]struct {
	VIP         string    `json:"vip"`
	AbsentSince time.Time `json:"absentSince"`
} {
	t.Helper()
	out := c.MustKubectl(t, "get", "configmap", "meshext-ipam", "-n", "kuma-system", "-o", `jsonpath={.data.ipam\.json}`)
	var st struct {
		Entries map[string]struct {
			VIP         string    `json:"vip"`
			AbsentSince time.Time `json:"absentSince"`
		} `json:"entries"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	return st.Entries
}

// TestKubernetesControlPlane: meshext on a real API server, as a cluster
// runs it. The spec's Kubernetes YAML is applied unchanged with kubectl;
// `meshext run --source kubernetes` (as the service account of
// deploy/kubernetes/rbac.yaml) writes hostnames and VIPs to status and
// feeds a real Envoy over ADS, which reaches the seed's stand-ins; a
// `kubectl edit` reaches Envoy without a restart; a deleted service's VIP is
// released by the lease rules; a second replica takes over from a killed
// leader without changing a VIP; the webhook refuses an invalid resource
// with Kuma's message; every manifest under deploy/kubernetes applies.
func TestKubernetesControlPlane(t *testing.T) {
	_, caFile, hostsFile := standIns(t)
	c := kubetest.Start(t)
	root := testenv.RepoRoot()
	deploy := filepath.Join(root, "deploy", "kubernetes")

	// CRDs and RBAC, for real.
	c.MustKubectl(t, "apply", "-f", filepath.Join(deploy, "crds"))
	c.MustKubectl(t, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
	c.MustKubectl(t, "apply", "-f", filepath.Join(deploy, "rbac.yaml"))
	kubeconfig := c.ServiceAccountKubeconfig(t, "kuma-system", "meshext")

	// The seed's Kubernetes YAML and the example policies, unchanged.
	for _, f := range seedExamples {
		c.MustKubectl(t, "apply", "-f", filepath.Join(root, "examples", f))
	}
	c.MustKubectl(t, "apply", "-f", filepath.Join(root, "examples", "policies"))
	outbounds := map[int]string{}
	_, err := c.KubectlStdin(kubeDataplane("e2e", outbounds), "apply", "-f", "-")
	require.NoError(t, err)

	a := startMesh(t, "", meshOpts{nodeID: "default.e2e", hostsFile: hostsFile, systemCA: caFile, ads: true,
		source: kubeSource(kubeconfig, "replica-a")})

	t.Run("kubectl get shows hostnames and VIPs", func(t *testing.T) {
		var rows map[string][2]string
		eventually(t, kubeTimout, "every seed MeshExternalService has a hostname and a VIP", func() error {
			rows = mesTable(t, c)
			for _, name := range seedMeshExternalServices {
				r := rows[name]
				if r[0] != name+".svc.meshext.local" || !strings.HasPrefix(r[1], "242.") {
					return fmt.Errorf("%s: %v (meshext log: %s)", name, r, a.run.Log())
				}
			}
			return nil
		})
		t.Logf("$ kubectl get meshexternalservices -n kuma-system\n%s", c.MustKubectl(t, "get", "meshexternalservices", "-n", "kuma-system"))
		vips := map[string]bool{}
		for _, name := range seedMeshExternalServices {
			vips[rows[name][1]] = true
		}
		assert.Len(t, vips, len(seedMeshExternalServices), "one VIP each: %v", rows)
		assert.Equal(t, "replica-a", leaseHolder(c))
		// Kuma's status shape, generator by core name.
		st := c.MustKubectl(t, "get", "extsvc", "mes-http", "-n", "kuma-system", "-o", "jsonpath={.status}")
		assert.Contains(t, st, `"hostnameGeneratorRef":{"coreName":"example.kuma-system"}`, st)
		assert.Contains(t, st, `"reason":"Generated"`, st)
		assert.Contains(t, st, `"origin":"HostnameGenerator"`, st)
	})

	t.Run("seed examples through Envoy over ADS", func(t *testing.T) {
		seedExamplesThrough(t, a)
		assert.Equal(t, "1", a.envoy.StatValue("control_plane.connected_state"))
	})

	t.Run("least privilege", func(t *testing.T) {
		sa := "--as=system:serviceaccount:kuma-system:meshext"
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"list", "secrets", "-n", "kuma-system"}, "yes"},
			{[]string{"get", "secrets", "-n", "default"}, "no"},
			{[]string{"list", "secrets", "-n", "default"}, "no"},
			{[]string{"update", "meshexternalservices", "-n", "kuma-system"}, "no"},
			{[]string{"patch", "meshexternalservices", "--subresource=status", "-n", "kuma-system"}, "yes"},
			{[]string{"patch", "meshexternalservices", "--subresource=status", "-n", "default"}, "no"},
			{[]string{"delete", "meshtimeouts", "-n", "kuma-system"}, "no"},
			{[]string{"update", "configmaps/other", "-n", "kuma-system"}, "no"},
		} {
			out, _ := c.Kubectl(append(append([]string{"auth", "can-i"}, tc.args...), sa)...)
			assert.Equal(t, tc.want, strings.TrimSpace(out), "can-i %v", tc.args)
		}
	})

	t.Run("manifests apply", func(t *testing.T) {
		c.MustKubectl(t, "create", "namespace", "web")
		out := c.MustKubectl(t, "apply", "--dry-run=server", "-f", filepath.Join(deploy, "meshext.yaml"), "-f", filepath.Join(deploy, "example-envoy.yaml"))
		for _, want := range []string{"deployment.apps/meshext created (server dry run)", "service/meshext-ads created (server dry run)",
			"service/meshext-webhook created (server dry run)", "dataplane.kuma.io/web created (server dry run)", "deployment.apps/web created (server dry run)"} {
			assert.Contains(t, out, want)
		}
	})

	echoA, err := upstream.StartTCPEcho(upstream.Addr("127.0.0.1:0"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = echoA.Close() })
	echoB, err := upstream.StartTCPEcho(upstream.Addr("127.0.0.1:0"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = echoB.Close() })
	apply := func(t *testing.T, yaml string) {
		t.Helper()
		_, err := c.KubectlStdin(yaml, "apply", "-f", "-")
		require.NoError(t, err)
	}
	reachable := func(t *testing.T, addr, what string) {
		t.Helper()
		eventually(t, kubeTimout, what, func() error {
			conn, _, err := dialEcho(addr, "hello "+what)
			if err == nil {
				conn.Close()
			}
			return err
		})
	}

	t.Run("kubectl edit reaches Envoy without a restart", func(t *testing.T) {
		pid := a.envoy.Pid()
		apply(t, kubeTCPService("kube-live", echoA.Addr()))
		outbounds[22000] = "kube-live"
		apply(t, kubeDataplane("e2e", outbounds))
		reachable(t, "127.0.0.1:22000", "kube-live through echo A")

		// kubectl edit, with an editor that moves the endpoint to echo B.
		_, portA, _ := net.SplitHostPort(echoA.Addr())
		_, portB, _ := net.SplitHostPort(echoB.Addr())
		require.NoError(t, echoA.Close())
		cmd := c.KubectlCmd(t.Context(), "edit", "meshexternalservice", "kube-live", "-n", "kuma-system")
		cmd.Env = append(cmd.Env, "KUBE_EDITOR=sed -i s/port:\\ "+portA+"$/port:\\ "+portB+"/")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		require.Contains(t, string(out), "edited")
		reachable(t, "127.0.0.1:22000", "kube-live through echo B after kubectl edit")
		assert.Equal(t, pid, a.envoy.Pid(), "the same Envoy process")
	})

	t.Run("deleting a service removes its cluster and releases its VIP per the lease rules", func(t *testing.T) {
		vip := c.MustKubectl(t, "get", "extsvc", "kube-live", "-n", "kuma-system", "-o", "jsonpath={.status.vip.ip}")
		require.True(t, strings.HasPrefix(vip, "242."), vip)
		cluster := "default_kube-live_kuma-system_default_extsvc_80"
		require.Contains(t, a.envoy.Text("/clusters"), cluster)

		c.MustKubectl(t, "delete", "extsvc", "kube-live", "-n", "kuma-system")
		eventually(t, kubeTimout, "Envoy drops the cluster", func() error {
			if strings.Contains(a.envoy.Text("/clusters"), cluster) {
				return fmt.Errorf("%s still in /clusters", cluster)
			}
			return nil
		})
		eventually(t, kubeTimout, "the ledger holds the VIP for its grace", func() error {
			e, ok := ipamLedger(t, c)["default/kube-live"]
			if !ok || e.VIP != vip || e.AbsentSince.IsZero() {
				return fmt.Errorf("ledger entry %+v (present %v)", e, ok)
			}
			return nil
		})
		// Back within the grace: the same VIP.
		apply(t, kubeTCPService("kube-live", echoB.Addr()))
		eventually(t, kubeTimout, "kube-live back with its VIP", func() error {
			if got := mesTable(t, c)["kube-live"][1]; got != vip {
				return fmt.Errorf("VIP %q, want %s", got, vip)
			}
			return nil
		})
		reachable(t, "127.0.0.1:22000", "kube-live again")

		// Deleted for longer than the grace: released, and not handed out
		// again at once (the cursor goes round the CIDR first).
		// Taken before the delete: meshext may see the deletion (and start
		// the grace) before kubectl returns.
		deleted := time.Now()
		c.MustKubectl(t, "delete", "extsvc", "kube-live", "-n", "kuma-system")
		eventually(t, kubeTimout, "the ledger holds the VIP again", func() error {
			if e, ok := ipamLedger(t, c)["default/kube-live"]; !ok || e.VIP != vip {
				return fmt.Errorf("ledger entry %+v (present %v)", e, ok)
			}
			return nil
		})
		eventually(t, kubeTimout, "the VIP released after the grace", func() error {
			if e, ok := ipamLedger(t, c)["default/kube-live"]; ok {
				return fmt.Errorf("still held: %+v", e)
			}
			return nil
		})
		assert.GreaterOrEqual(t, time.Since(deleted), kubeGrace, "not released before the grace")
		apply(t, kubeTCPService("kube-live", echoB.Addr()))
		eventually(t, kubeTimout, "kube-live gets a VIP", func() error {
			if got := mesTable(t, c)["kube-live"][1]; !strings.HasPrefix(got, "242.") {
				return fmt.Errorf("VIP %q", got)
			}
			return nil
		})
		assert.NotEqual(t, vip, mesTable(t, c)["kube-live"][1], "a released VIP is not reused at once")
		reachable(t, "127.0.0.1:22000", "kube-live re-created")
	})

	t.Run("a second replica takes over from a killed leader", func(t *testing.T) {
		apply(t, kubeTCPService("kube-b1", echoB.Addr()))
		apply(t, kubeDataplane("e2e-b", map[int]string{22100: "kube-b1"}))
		b := startMesh(t, "", meshOpts{nodeID: "default.e2e-b", hostsFile: hostsFile, systemCA: caFile, ads: true,
			source: kubeSource(kubeconfig, "replica-b")})
		reachable(t, "127.0.0.1:22100", "kube-b1 through the follower's Envoy")
		require.Equal(t, "replica-a", leaseHolder(c), "replica-a leads, replica-b follows")
		before := mesTable(t, c)
		updatesBefore := b.envoy.StatValue("listener_manager.lds.update_success")

		// A crash: no chance to release the Lease.
		require.NoError(t, a.run.Cmd.Process.Kill())
		killed := time.Now()
		eventually(t, kubeTimout, "replica-b holds the Lease", func() error {
			if h := leaseHolder(c); h != "replica-b" {
				return fmt.Errorf("holder %q", h)
			}
			return nil
		})
		took := time.Since(killed)
		t.Logf("takeover %.1fs after the leader was killed (lease %s, retry %s)", took.Seconds(), kubeLease, kubeRetry)
		// client-go's follower counts the lease from when it saw the last
		// renewal (up to a retry late) and tries every retry (plus jitter).
		assert.LessOrEqual(t, took, kubeLease+3*kubeRetry+3*time.Second, "within the lease time")
		assert.Contains(t, b.run.Log(), "leading; allocating VIPs", "replica-b says it leads")

		// No VIP changed; both Envoys keep their config (a's lost its control plane).
		assert.Equal(t, before, mesTable(t, c))
		reachable(t, "127.0.0.1:22100", "kube-b1 after the takeover")
		reachable(t, "127.0.0.1:14242", "mes-tcp through the Envoy of the dead replica")
		assert.Equal(t, updatesBefore, b.envoy.StatValue("listener_manager.lds.update_success"), "the takeover pushed nothing")

		// A new change reaches the survivor's Envoy: the new leader allocates.
		apply(t, kubeTCPService("kube-b2", echoB.Addr()))
		apply(t, kubeDataplane("e2e-b", map[int]string{22100: "kube-b1", 22101: "kube-b2"}))
		reachable(t, "127.0.0.1:22101", "kube-b2, made after the takeover")
		after := mesTable(t, c)
		assert.True(t, strings.HasPrefix(after["kube-b2"][1], "242."), "kube-b2 has a VIP: %v", after)
		for name, row := range before {
			assert.Equal(t, row, after[name], name)
		}
	})

	t.Run("webhook refuses an invalid resource with Kuma's message", func(t *testing.T) {
		state := filepath.Join(t.TempDir(), "webhook")
		addr := "127.0.0.1:" + strconv.Itoa(testnet.FreePort(t))
		wh := netns.StartCmd(t, "meshext-webhook", exec.Command(meshext(t), "webhook", "--listen", addr, "--state-dir", state))
		cfg, err := exec.Command(meshext(t), "webhook", "config", "--state-dir", state, "--url", "https://"+addr+"/validate").Output()
		require.NoError(t, err)
		apply(t, string(cfg))

		bad := `apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata:
  name: bad-tls
  namespace: kuma-system
  labels: {kuma.io/mesh: default}
spec:
  match: {port: 443, protocol: tcp}
  endpoints: [{address: example.com, port: 443}]
  tls:
    enabled: true
    version: {min: TLS13, max: TLS12}
`
		want := "spec.tls.version.min: min version must be lower than max"
		eventually(t, kubeTimout, "the webhook refuses it", func() error {
			_, err := c.KubectlStdin(bad, "apply", "-f", "-")
			if err == nil {
				c.Kubectl("delete", "extsvc", "bad-tls", "-n", "kuma-system")
				return fmt.Errorf("accepted (webhook log: %s)", wh.Log())
			}
			// kubectl prints a 422 with causes as the API server's own.
			if !strings.Contains(err.Error(), `The MeshExternalService "bad-tls" is invalid: `+want) {
				return err
			}
			return nil
		})
		assert.Contains(t, wh.Log(), `msg=refused operation=CREATE object="MeshExternalService kuma-system/bad-tls"`, "refused by the webhook")
		_, err = c.Kubectl("get", "extsvc", "bad-tls", "-n", "kuma-system")
		assert.Error(t, err, "nothing stored")

		// The same message as meshext validate gives for the same YAML.
		f := filepath.Join(t.TempDir(), "bad.yaml")
		require.NoError(t, os.WriteFile(f, []byte(bad), 0o644))
		out, _ := exec.Command(meshext(t), "validate", f).CombinedOutput()
		assert.Contains(t, string(out), "MeshExternalService default/bad-tls: "+want, string(out))

		// A valid one goes through.
		apply(t, kubeTCPService("good-after-webhook", echoB.Addr()))
		c.MustKubectl(t, "get", "extsvc", "good-after-webhook", "-n", "kuma-system")
	})
}

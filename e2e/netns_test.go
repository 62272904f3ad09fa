package e2e

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/bpf"
	"github.com/meshext/meshext/e2e/netns"
	"github.com/meshext/meshext/e2e/testenv"
)

// TestNetnsSeedCommandsDirect proves the egress topology's plumbing with
// today's direct mode: `meshext run` (its DNS) and the seed Dataplane's
// sidecar Envoy in the workload namespace, the eBPF redirect on its app
// cgroup, the stand-ins in the internet namespace; the workload namespace
// has a route to the internet through the egress namespace (forwarding on),
// since here the sidecar itself connects to the stand-ins. The seed's seven
// commands run unchanged as the workload.
func TestNetnsSeedCommandsDirect(t *testing.T) {
	tp := netns.New(t, netns.Options{DirectRoute: true})
	in := tp.StartInternet(t)
	testenv.Tool(t, "nc")
	testenv.Tool(t, "curl")
	testenv.Tool(t, "grpcurl")
	// Named like the e2e Dataplane, so meshext run points the redirect at
	// its transparent listener (15101) and at its own DNS server.
	w := tp.AttachWorkload(t, netns.WorkloadOptions{Name: "e2e"})
	m := startMesh(t, seedDropDir(t), meshOpts{nodeID: "default.e2e", hostsFile: in.HostsFile, systemCA: in.CAFile,
		workload: w, redirectBPFFS: w.BPFFS})
	m.waitListener(t, "127.0.0.1:15101")
	eventually(t, 20*time.Second, "meshext run updates the redirect", func() error {
		cfg, err := w.Redirect.Config()
		if err != nil {
			return err
		}
		want := []bpf.VIPRoute{{CIDR: bpf.DefaultVIPCIDR, Proxy: netip.MustParseAddrPort("127.0.0.1:15101")}}
		if len(cfg.VIPs) != 1 || cfg.VIPs[0] != want[0] || cfg.DNS.String() != m.dnsAddr {
			return fmt.Errorf("config %+v, want VIPs %v and DNS %s", cfg, want, m.dnsAddr)
		}
		return nil
	})
	runSeedCommands(t, func(t *testing.T, line string) string {
		t.Helper()
		out, err := w.Shell(30*time.Second, line)
		require.NoError(t, err, "%s\n%s", line, out)
		return out
	})
}

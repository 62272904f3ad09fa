package netns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshext/meshext/bpf"
	"github.com/meshext/meshext/bpf/bpftest"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testenv"
)

// Defaults of WorkloadOptions: meshext's transparent listener and embedded
// DNS addresses (bpf's CLI defaults), inside the workload namespace.
var (
	DefaultSidecarAddr = netip.MustParseAddrPort("127.0.0.1:15001")
	DefaultDNSAddr     = netip.MustParseAddrPort("127.0.0.1:15053")
)

// WorkloadOptions shape AttachWorkload.
type WorkloadOptions struct {
	// Name of the eBPF attachment. `meshext run --redirect-bpffs
	// bpftest.BPFFS()` points an attachment named like a Dataplane (its name
	// or node id) at that Dataplane's transparent listener and at its own
	// DNS server. Empty: a name unique in the test binary.
	Name string
	// Sidecar is where connections to VIPs go; zero means DefaultSidecarAddr.
	Sidecar netip.AddrPort
	// DNS is where the workload's DNS queries go; zero means DefaultDNSAddr.
	DNS netip.AddrPort
}

// Workload is the workload namespace's app cgroup with meshext's eBPF
// redirect attached, and the sidecar cgroup its Envoy runs in.
type Workload struct {
	*NS
	Name     string // the attachment's name
	App      string // cgroup of the workload's processes (Command, Shell)
	Sidecar  string // cgroup of the sidecar (SidecarCommand, SidecarEnvoy, ListenSidecar)
	Mount    string // the cgroup v2 mount
	BPFFS    string // where the attachment is pinned (bpftest's private bpffs)
	Redirect *bpf.Redirect

	appDir, sidecarDir *os.File // kept open for CLONE_INTO_CGROUP
}

var workloadSeq atomic.Int64

// AttachWorkload makes the app and sidecar cgroups and attaches meshext's
// redirect (bpf.Attach): TCP from the app cgroup to 242.0.0.0/8 goes to
// o.Sidecar with the original destination kept, its DNS to o.DNS. At the end
// of the test whatever still runs in the cgroups is killed, the redirect
// detached and the cgroups removed.
func (tp *Topology) AttachWorkload(t testing.TB, o WorkloadOptions) *Workload {
	t.Helper()
	mount := bpftest.Require(t)
	testenv.Require(t, bpf.CheckKernel() == nil, fmt.Sprintf("kernel for the eBPF redirect: %v", bpf.CheckKernel()))
	if o.Name == "" {
		o.Name = fmt.Sprintf("workload-%d", workloadSeq.Add(1))
	}
	if !o.Sidecar.IsValid() {
		o.Sidecar = DefaultSidecarAddr
	}
	if !o.DNS.IsValid() {
		o.DNS = DefaultDNSAddr
	}
	w := &Workload{NS: tp.Workload, Name: o.Name, Mount: mount, BPFFS: bpftest.BPFFS()}
	w.App = bpftest.NewCgroup(t, mount, "app")
	w.Sidecar = bpftest.NewCgroup(t, mount, "sidecar")
	var err error
	if w.appDir, err = os.Open(w.App); err != nil {
		t.Fatal(err)
	}
	if w.sidecarDir, err = os.Open(w.Sidecar); err != nil {
		t.Fatal(err)
	}
	r, _, err := bpf.Attach(bpf.Spec{Name: o.Name, AppCgroup: w.App, ProxyCgroup: w.Sidecar, BPFFS: w.BPFFS,
		Config: bpf.Config{VIPs: []bpf.VIPRoute{{CIDR: bpf.DefaultVIPCIDR, Proxy: o.Sidecar}}, DNS: o.DNS}})
	if err != nil {
		t.Fatalf("attach the eBPF redirect to %s: %v", w.App, err)
	}
	w.Redirect = r
	t.Cleanup(func() {
		r.Close()
		if err := bpf.Detach(w.BPFFS, o.Name); err != nil {
			t.Errorf("detach the eBPF redirect %s: %v", o.Name, err)
		}
	})
	// Runs before the detach: nothing may outlive the test in the cgroups.
	t.Cleanup(func() {
		for _, dir := range []string{w.App, w.Sidecar} {
			if err := bpftest.KillCgroup(dir, 5*time.Second); err != nil {
				t.Error(err)
			}
		}
		w.appDir.Close()
		w.sidecarDir.Close()
	})
	return w
}

// into starts cmd directly inside the cgroup open as dir (clone3
// CLONE_INTO_CGROUP), so none of its sockets is made elsewhere.
func into(cmd *exec.Cmd, dir *os.File) {
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(dir.Fd())
}

// Command is exec.Command for bin run as the workload: in the workload
// namespace and the app cgroup (its DNS and VIP connections redirected),
// see NS.Command.
func (w *Workload) Command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := w.NS.Command(ctx, bin, args...)
	into(cmd, w.appDir)
	return cmd
}

// Run runs a client as the workload for at most timeout.
func (w *Workload) Run(timeout time.Duration, stdin, bin string, args ...string) (string, error) {
	return bounded(timeout, stdin, func(ctx context.Context) *exec.Cmd { return w.Command(ctx, bin, args...) })
}

// Shell runs `sh -c line` as the workload for at most timeout, with
// .tools/bin first on PATH: the seed's command lines run unchanged, e.g.
// "echo 'echo this' | nc -q 3 mes-tcp.svc.meshext.local 4242".
func (w *Workload) Shell(timeout time.Duration, line string) (string, error) {
	return w.Run(timeout, "", "/bin/sh", "-c", line)
}

// Dial connects as the workload (a socket of the app cgroup, made in the
// workload namespace), e.g. to a VIP, which the redirect sends to the
// sidecar; for connections kept open across a test step. addr must be IP:port.
func (w *Workload) Dial(t testing.TB, ctx context.Context, network, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	bpftest.InCgroup(t, w.Mount, w.App, func() { c, err = w.NS.DialContext(ctx, network, addr) })
	if err != nil {
		t.Fatalf("dial %s as the workload: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// SidecarCommand is exec.Command for bin in the workload namespace and the
// sidecar cgroup (where SO_ORIGINAL_DST is answered), for StartCmd.
func (w *Workload) SidecarCommand(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	w.NS.Wrap(cmd)
	into(cmd, w.sidecarDir)
	return cmd
}

// SidecarEnvoy makes an Envoy started with o the workload's sidecar: in
// the workload namespace and the sidecar cgroup, admin reached from inside.
func (w *Workload) SidecarEnvoy(o *envoyproc.Options) {
	w.NS.Envoy(o)
	wrap := o.Cmd
	o.Cmd = func(cmd *exec.Cmd) {
		wrap(cmd)
		into(cmd, w.sidecarDir)
	}
}

// ListenSidecar is net.Listen in the workload namespace by a socket of the
// sidecar cgroup: a stand-in for Envoy's transparent listener whose accepted
// connections answer bpf.OriginalDst.
// It is closed when the test ends.
func (w *Workload) ListenSidecar(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	var err error
	bpftest.InCgroup(t, w.Mount, w.Sidecar, func() { l, err = w.NS.Listen(network, addr) })
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, w.NS.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

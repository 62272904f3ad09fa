package netns_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/bpf"
	"github.com/meshext/meshext/bpf/bpftest"
	"github.com/meshext/meshext/controller/dns"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/netns"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
	"github.com/meshext/meshext/e2e/upstream"
)

// As root the tests run in bpftest's private network and mount namespaces,
// which is where netns.New makes its own.
func TestMain(m *testing.M) { os.Exit(bpftest.Run(m)) }

// TestNoRouteFromWorkloadToInternet is the "no bypass" check: every stand-in
// answers from the egress namespace, and from the workload namespace
// (inside its redirected cgroup or not) a direct connection fails at once
// with "network unreachable". No namespace has a default route or a route
// outside the documentation ranges, and the egress does not forward.
func TestNoRouteFromWorkloadToInternet(t *testing.T) {
	tp := netns.New(t, netns.Options{})
	in := tp.StartInternet(t)
	w := tp.AttachWorkload(t, netns.WorkloadOptions{})
	nc := testenv.Tool(t, "nc")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ep := range in.Endpoints() {
		c, err := tp.Egress.DialContext(ctx, "tcp", ep.String())
		if assert.NoError(t, err, "from the egress to %s", ep) {
			c.Close()
		}
	}
	assert.NoError(t, tp.Workload.CheckNoRoute(ctx, in.Endpoints()))
	// A real client, as the workload (in the app cgroup): no route either.
	out, err := w.Run(10*time.Second, "echo this\n", nc, "-v", "-q", "3", "-w", "3", in.Addrs[upstream.TCPBin].String(), "4242")
	assert.Error(t, err, out)
	assert.Contains(t, out, "Network is unreachable")

	for _, n := range []*netns.NS{tp.Workload, tp.Egress, tp.Internet} {
		for _, family := range []string{"-4", "-6"} {
			out, err := n.Run(10*time.Second, "", "ip", family, "route", "show", "table", "all")
			require.NoError(t, err, out)
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				assert.NotContains(t, line, "default", "%s: %s", n.Name, line)
			}
		}
		out, err := n.Run(10*time.Second, "", "ip", "-4", "route", "show")
		require.NoError(t, err, out)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			dst := netip.MustParsePrefix(strings.Fields(line)[0])
			assert.True(t, docRange(dst), "%s has a route outside the RFC 5737 ranges: %s", n.Name, line)
		}
	}
	out, err = tp.Egress.Run(10*time.Second, "", "cat", "/proc/sys/net/ipv4/ip_forward")
	require.NoError(t, err, out)
	assert.Equal(t, "0\n", out, "the egress namespace forwards")
}

func docRange(p netip.Prefix) bool {
	for _, r := range []netip.Prefix{netns.WorkloadNet, netns.UplinkNet, netns.InternetNet} {
		if r.Contains(p.Addr()) && p.Bits() >= r.Bits() {
			return true
		}
	}
	return false
}

// TestStandInsByNameFromEgress runs the real clients in the egress
// namespace against the seed's host names, resolved by the internet
// namespace's DNS server: what the egress Envoy will reach.
func TestStandInsByNameFromEgress(t *testing.T) {
	tp := netns.New(t, netns.Options{})
	in := tp.StartInternet(t)
	testenv.Tool(t, "nc")
	testenv.Tool(t, "curl")
	testenv.Tool(t, "grpcurl")
	sh := func(t *testing.T, line string) string {
		t.Helper()
		out, err := tp.Egress.Shell(30*time.Second, line)
		require.NoError(t, err, "%s\n%s", line, out)
		return out
	}
	for name, addr := range in.Addrs {
		t.Run("resolve "+name, func(t *testing.T) {
			assert.Equal(t, addr.String(), strings.Fields(sh(t, "getent ahostsv4 "+name))[0])
		})
	}
	t.Run("tcp", func(t *testing.T) {
		assert.Equal(t, "echo this\n", sh(t, "echo 'echo this' | nc -N tcpbin.com 4242"))
	})
	t.Run("http", func(t *testing.T) {
		assert.Contains(t, sh(t, "curl -sS http://httpbin.org/get"), `"Host": "httpbin.org"`)
	})
	t.Run("https", func(t *testing.T) {
		assert.Contains(t, sh(t, "curl -sS --cacert "+in.CAFile+" https://httpbin.org/get"), "https://httpbin.org/get")
	})
	t.Run("grpc", func(t *testing.T) {
		assert.Contains(t, sh(t, "grpcurl -plaintext grpcbin.test.k6.io:9000 list"), upstream.GRPCBinService)
	})
	t.Run("grpcs", func(t *testing.T) {
		assert.Contains(t, sh(t, "grpcurl -cacert "+in.CAFile+" grpcbin.test.k6.io:9001 list"), upstream.GRPCBinService)
	})
}

// TestWorkloadRedirect checks the workload's plumbing with a plain listener
// standing in for the sidecar Envoy and meshext's DNS server in the
// workload namespace: a client in the app cgroup resolves a MeshExternalService
// host name to its VIP and lands on the sidecar port with the VIP as the
// original destination; outside the app cgroup nothing is redirected.
func TestWorkloadRedirect(t *testing.T) {
	tp := netns.New(t, netns.Options{})
	w := tp.AttachWorkload(t, netns.WorkloadOptions{})
	testenv.Tool(t, "nc")
	const host = "mes-tcp.svc.meshext.local"
	vip := netip.MustParseAddr("242.0.0.7")

	srv, err := dns.New(dns.Config{Listen: netns.DefaultDNSAddr.String(), RateLimit: -1})
	require.NoError(t, err)
	require.NoError(t, srv.SetRecords(map[string]netip.Addr{host: vip}))
	require.NoError(t, tp.Workload.Do(srv.Start))
	t.Cleanup(func() { srv.Close() })

	// The sidecar stand-in says which original destination it saw, then echoes.
	testnet.Serve(t, w.ListenSidecar(t, "tcp4", netns.DefaultSidecarAddr.String()), func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		dst, err := bpf.OriginalDst(c.(*net.TCPConn))
		fmt.Fprintf(c, "original destination %v %v\n", dst, err)
		_, _ = io.Copy(c, c)
	})

	out, err := w.Shell(20*time.Second, "getent ahostsv4 "+host)
	require.NoError(t, err, out)
	assert.Equal(t, vip.String(), strings.Fields(out)[0])

	out, err = w.Shell(20*time.Second, "echo 'echo this' | nc -N "+host+" 4242")
	require.NoError(t, err, out)
	assert.Equal(t, "original destination 242.0.0.7:4242 <nil>\necho this\n", out)

	// A Go socket as the workload takes the same path.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := w.Dial(t, ctx, "tcp4", netip.AddrPortFrom(vip, 4242).String())
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "original destination 242.0.0.7:4242 <nil>\n", line)

	st, err := w.Redirect.Stats()
	require.NoError(t, err)
	assert.NotZero(t, st.DNSRedirect, st)
	assert.NotZero(t, st.TCPRedirect, st)
	assert.NotZero(t, st.GetsockoptHit, st)

	// Outside the app cgroup the same namespace has no DNS (the host's
	// resolver is unreachable) and no route to the VIP.
	out, err = tp.Workload.Shell(20*time.Second, "getent ahostsv4 "+host)
	assert.Error(t, err, out)
	_, err = tp.Workload.DialContext(ctx, "tcp", netip.AddrPortFrom(vip, 4242).String())
	assert.ErrorIs(t, err, syscall.ENETUNREACH)
}

// leftovers are what one topology made, to look for after it is gone.
type leftovers struct {
	Namespaces []string // names under /run/netns (and /etc/netns)
	Cgroups    []string
	Pids       []int // started with StartCmd: SIGKILL when the test binary dies
	Strays     []int // left their process group: only cgroups find them
	PinDir     string
}

// build makes a topology with everything in it: the stand-ins and DNS, a
// workload with its redirect, a long-running process in each namespace and
// cgroup, and strays that left their process group (setsid).
func build(t *testing.T) leftovers {
	tp := netns.New(t, netns.Options{DirectRoute: true})
	tp.StartInternet(t)
	w := tp.AttachWorkload(t, netns.WorkloadOptions{})
	var l leftovers
	for _, n := range []*netns.NS{tp.Workload, tp.Egress, tp.Internet} {
		l.Namespaces = append(l.Namespaces, n.Name)
		l.Cgroups = append(l.Cgroups, n.Cgroup)
		l.Pids = append(l.Pids, n.Start(t, "sleep-"+n.Name, nil, "sleep", "600").Pid())
		l.Strays = append(l.Strays, stray(t, n.Shell))
	}
	l.Cgroups = append(l.Cgroups, w.App, w.Sidecar)
	l.Pids = append(l.Pids, netns.StartCmd(t, "sleep-sidecar", w.SidecarCommand("sleep", "600")).Pid())
	l.Strays = append(l.Strays, stray(t, w.Shell))
	l.PinDir = bpf.PinDir(w.BPFFS, w.Name)
	return l
}

// stray starts a sleep that leaves its shell's process group and returns its pid.
func stray(t *testing.T, shell func(time.Duration, string) (string, error)) int {
	out, err := shell(10*time.Second, "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!")
	require.NoError(t, err, out)
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	require.NoError(t, err, out)
	require.True(t, bpftest.Alive(pid))
	return pid
}

// gone reports what of l still exists.
func gone(l leftovers) error {
	var errs []error
	for _, name := range l.Namespaces {
		for _, dir := range []string{"/run/netns", "/etc/netns"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				errs = append(errs, fmt.Errorf("%s/%s exists", dir, name))
			}
		}
	}
	for _, c := range l.Cgroups {
		if _, err := os.Stat(c); err == nil {
			errs = append(errs, fmt.Errorf("cgroup %s exists", c))
		}
	}
	for _, pid := range append(l.Pids, l.Strays...) {
		if bpftest.Alive(pid) {
			errs = append(errs, fmt.Errorf("process %d still runs", pid))
		}
	}
	if l.PinDir != "" {
		if _, err := os.Stat(l.PinDir); err == nil {
			errs = append(errs, fmt.Errorf("BPF pins %s exist", l.PinDir))
		}
	}
	return errors.Join(errs...)
}

// TestCleanupLeavesNothing builds a full topology in a subtest and checks,
// once the subtest's cleanups ran, that no namespace, /etc/netns entry,
// veth, cgroup, BPF pin or process is left.
func TestCleanupLeavesNothing(t *testing.T) {
	netns.Require(t)
	var l leftovers
	t.Run("build", func(t *testing.T) { l = build(t) })
	require.Len(t, l.Pids, 4)
	require.Len(t, l.Strays, 4)
	require.NoError(t, gone(l))
	// The veths lived only in the namespaces; none ever was, or is, here.
	out, err := exec.Command("ip", "-o", "link", "show", "type", "veth").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Empty(t, strings.TrimSpace(string(out)))
	// No mount of a deleted namespace is left behind in this mount namespace.
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	for _, name := range l.Namespaces {
		assert.NotContains(t, string(mounts), name)
	}
}

const killedRunEnv = "MESHEXT_NETNS_KILLED_RUN"

// TestKilledRunIsSweptAtStart kills a test binary (SIGKILL, no cleanup)
// that built a full topology with strays, and checks that RemoveStale, which
// netns.New runs first, removes everything it left.
func TestKilledRunIsSweptAtStart(t *testing.T) {
	if os.Getenv(killedRunEnv) == "1" {
		// The run to be killed: report what it made, then wait (bounded).
		l := build(t)
		ints := func(v []int) string { return strings.ReplaceAll(strings.Trim(fmt.Sprint(v), "[]"), " ", ",") }
		fmt.Printf("LEFTOVERS %d %s %s %s %s\n", os.Getpid(), strings.Join(l.Namespaces, ","), strings.Join(l.Cgroups, ","),
			ints(l.Pids), ints(l.Strays))
		time.Sleep(60 * time.Second)
		t.Fatal("not killed within 60s")
	}
	netns.Require(t)
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^TestKilledRunIsSweptAtStart$", "-test.count=1")
	cmd.Env = append(os.Environ(), killedRunEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "LEFTOVERS ") {
				lines <- sc.Text()
			}
		}
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(60 * time.Second):
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	require.NotEmpty(t, line, "the run to kill never built its topology:\n%s", stderr.String())

	f := strings.Fields(line)
	require.Len(t, f, 6, line)
	pids := func(s string) []int {
		var out []int
		for _, p := range strings.Split(s, ",") {
			n, err := strconv.Atoi(p)
			require.NoError(t, err, line)
			out = append(out, n)
		}
		return out
	}
	pid := pids(f[1])[0]
	l := leftovers{Namespaces: strings.Split(f[2], ","), Cgroups: strings.Split(f[3], ","), Pids: pids(f[4]), Strays: pids(f[5])}
	// The killed test process is gone (bpftest's Pdeathsig), and so is what
	// it started itself; the strays and every name are left.
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range append([]int{pid}, l.Pids...) {
		for bpftest.Alive(p) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		require.False(t, bpftest.Alive(p), "process %d of the killed run", p)
	}
	// Another test binary starting now may sweep first; usually this lists
	// the namespace files, cgroups and strays.
	t.Logf("left by the killed run: %v", gone(l))

	removed, err := netns.RemoveStale()
	require.NoError(t, err)
	t.Logf("removed: %s", strings.Join(removed, ", "))
	require.NoError(t, gone(l))
}

// egressBootstrap is a minimal Envoy standing in for the egress: TCP on
// the egress address to httpbin.org:80, resolved through the internet DNS.
const egressBootstrap = `
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}
static_resources:
  listeners:
  - name: egress
    address: {socket_address: {address: 192.0.2.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: egress
          cluster: httpbin
  clusters:
  - name: httpbin
    type: STRICT_DNS
    connect_timeout: 2s
    dns_lookup_family: V4_ONLY
    typed_dns_resolver_config:
      name: envoy.network.dns_resolver.cares
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
        resolvers: [{socket_address: {address: 203.0.113.53, port_value: 53}}]
    load_assignment:
      cluster_name: httpbin
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: httpbin.org, port_value: 80}}}}]}]
`

// TestEgressEnvoyByName runs a real Envoy in the egress namespace that
// resolves httpbin.org through the internet DNS, and reaches it from the
// workload namespace through that Envoy: the path the egress scenarios take.
func TestEgressEnvoyByName(t *testing.T) {
	tp := netns.New(t, netns.Options{})
	in := tp.StartInternet(t)
	testenv.Tool(t, "curl")
	o := envoyproc.Options{Bootstrap: []byte(egressBootstrap), Name: "egress", LogLevel: "warn"}
	tp.Egress.Envoy(&o)
	e := envoyproc.StartT(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, tp.Workload.CheckNoRoute(ctx, in.Endpoints()))

	out, err := tp.Workload.Run(20*time.Second, "", "curl", "-sS", "--max-time", "10", "http://192.0.2.1:10000/get")
	require.NoError(t, err, out)
	assert.Contains(t, out, `"url": "http://192.0.2.1:10000/get"`)
	assert.Equal(t, "1", e.StatValue("cluster.httpbin.upstream_cx_total"))
}

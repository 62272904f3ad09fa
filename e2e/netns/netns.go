// Package netns builds the egress topology of the end-to-end tests out of
// fresh network namespaces the test makes itself:
//
//	workload 192.0.2.2 ──veth── 192.0.2.1 egress 198.51.100.1 ──veth── 198.51.100.2 internet
//	(cgroup + eBPF redirect,           (egress Envoy)             203.0.113.11 tcpbin.com
//	 sidecar Envoy, meshext DNS)                                  203.0.113.12 httpbin.org
//	                                                              203.0.113.13 grpcbin.test.k6.io
//	                                                              203.0.113.53 DNS for those names
//
// The workload reaches only the egress: it has no route to 198.51.100.0/24
// or 203.0.113.0/24, and the egress does not forward. No namespace has a
// default route or any link to the host; every address is from the RFC 5737
// documentation ranges. Names carry the test process's pid, so concurrent
// runs never meet, and New first removes what a killed run left.
//
// The test binary must run its tests through bpftest (TestMain:
// os.Exit(bpftest.Run(m))): as root the whole run is then in private network
// and mount namespaces, so the namespaces' bind mounts and the BPF pins die
// with it.
//
//	tp := netns.New(t, netns.Options{})
//	in := tp.StartInternet(t) // stand-ins + DNS in "internet"
//	w := tp.AttachWorkload(t, netns.WorkloadOptions{Name: "e2e"})
//	tp.Workload.Start(t, "meshext-run", nil, bin, "run", ...)
//	o := envoyproc.Pinned(envoy, bootstrap, dir, "sidecar", nil)
//	w.SidecarEnvoy(&o)
//	out, err := w.Shell(30*time.Second, "curl -s http://mes-http.svc.meshext.local")
//
// Processes run in a namespace through `ip netns exec` (which also gives them
// /etc/netns/<name>/resolv.conf), in the namespace's cgroup (or the
// workload's app or sidecar cgroup), in their own process group, with
// SIGKILL when the test binary dies; Go sockets are made in a namespace by
// NS.Do. See README.md.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshext/meshext/bpf/bpftest"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/upstream"
)

// The topology's addresses, all from the RFC 5737 documentation ranges.
var (
	// WorkloadNet joins the workload and the egress.
	WorkloadNet  = netip.MustParsePrefix("192.0.2.0/24")
	EgressAddr   = netip.MustParseAddr("192.0.2.1") // the egress as workloads reach it (a ZoneEgress's networking.address)
	WorkloadAddr = netip.MustParseAddr("192.0.2.2")
	// UplinkNet joins the egress and the internet.
	UplinkNet        = netip.MustParsePrefix("198.51.100.0/24")
	EgressUplinkAddr = netip.MustParseAddr("198.51.100.1")
	InternetAddr     = netip.MustParseAddr("198.51.100.2")
	// InternetNet holds the stand-ins and their DNS server, on the internet
	// namespace's lo; the egress routes it through InternetAddr.
	InternetNet     = netip.MustParsePrefix("203.0.113.0/24")
	InternetDNSAddr = netip.MustParseAddr("203.0.113.53")
)

// StandInAddrs are the internet addresses of the seed's public hosts.
func StandInAddrs() map[string]netip.Addr {
	return map[string]netip.Addr{
		upstream.TCPBin:  netip.MustParseAddr("203.0.113.11"),
		upstream.HTTPBin: netip.MustParseAddr("203.0.113.12"),
		upstream.GRPCBin: netip.MustParseAddr("203.0.113.13"),
	}
}

// namePrefix starts every namespace name: meshext-e2e-<pid>-<seq>-<role>.
const namePrefix = "meshext-e2e-"

// Interface names inside the namespaces (each namespace has its own set).
const (
	workloadLink       = "to-egress"   // in workload
	egressWorkloadLink = "to-workload" // in egress
	egressUplinkLink   = "to-internet" // in egress
	internetLink       = "to-egress"   // in internet
)

// cmdTimeout bounds every `ip` command the package runs.
const cmdTimeout = 10 * time.Second

var (
	seq       atomic.Int64
	sweepOnce sync.Once
	sweepErr  error
	swept     []string
)

// Options shape the topology.
type Options struct {
	// DirectRoute gives the workload a route to the internet through the
	// egress namespace, which then forwards (and the internet a route back):
	// meshext's direct mode, where the sidecar itself connects to the
	// stand-ins. Scenarios about the egress path leave it off.
	DirectRoute bool
}

// Topology is the three namespaces, linked and routed.
type Topology struct {
	Workload, Egress, Internet *NS
	Options                    Options
}

// NS is one named network namespace (under /run/netns) with lo up, and
// the cgroup processes started in it join unless told otherwise.
type NS struct {
	Name   string
	Cgroup string

	ip        string   // the ip binary
	cgroupDir *os.File // Cgroup, open for CLONE_INTO_CGROUP
}

// Path is the namespace's bind mount, /run/netns/<name>.
func (n *NS) Path() string { return filepath.Join("/run/netns", n.Name) }

// New creates the workload, egress and internet namespaces with their links
// and routes, and deletes them when the test ends (processes still inside
// are killed first). It fails under CI=true, and skips elsewhere, without
// root, the bpftest private namespaces or iproute2.
func New(t testing.TB, o Options) *Topology {
	t.Helper()
	ip, mount := Require(t)
	sweepOnce.Do(func() { swept, sweepErr = RemoveStale() })
	if sweepErr != nil {
		t.Fatalf("remove what killed runs left: %v", sweepErr)
	}
	if len(swept) > 0 {
		t.Logf("removed leftovers of killed runs: %s", strings.Join(swept, ", "))
	}
	id := fmt.Sprintf("%s%d-%d", namePrefix, os.Getpid(), seq.Add(1))
	tp := &Topology{Options: o}
	tp.Workload = newNS(t, ip, mount, id, "workload")
	tp.Egress = newNS(t, ip, mount, id, "egress")
	tp.Internet = newNS(t, ip, mount, id, "internet")

	pfx := func(a netip.Addr, p netip.Prefix) string { return netip.PrefixFrom(a, p.Bits()).String() }
	steps := [][]string{
		{"link", "add", workloadLink, "netns", tp.Workload.Name, "type", "veth", "peer", "name", egressWorkloadLink, "netns", tp.Egress.Name},
		{"link", "add", egressUplinkLink, "netns", tp.Egress.Name, "type", "veth", "peer", "name", internetLink, "netns", tp.Internet.Name},
		{"-n", tp.Workload.Name, "addr", "add", pfx(WorkloadAddr, WorkloadNet), "dev", workloadLink},
		{"-n", tp.Egress.Name, "addr", "add", pfx(EgressAddr, WorkloadNet), "dev", egressWorkloadLink},
		{"-n", tp.Egress.Name, "addr", "add", pfx(EgressUplinkAddr, UplinkNet), "dev", egressUplinkLink},
		{"-n", tp.Internet.Name, "addr", "add", pfx(InternetAddr, UplinkNet), "dev", internetLink},
		{"-n", tp.Internet.Name, "addr", "add", InternetDNSAddr.String() + "/32", "dev", "lo"},
	}
	for _, a := range sortedAddrs(StandInAddrs()) {
		steps = append(steps, []string{"-n", tp.Internet.Name, "addr", "add", a.String() + "/32", "dev", "lo"})
	}
	for _, l := range []struct {
		ns  *NS
		dev string
	}{
		{tp.Workload, workloadLink}, {tp.Egress, egressWorkloadLink}, {tp.Egress, egressUplinkLink}, {tp.Internet, internetLink},
	} {
		steps = append(steps, []string{"-n", l.ns.Name, "link", "set", l.dev, "up"})
	}
	steps = append(steps, []string{"-n", tp.Egress.Name, "route", "add", InternetNet.String(), "via", InternetAddr.String()})
	if o.DirectRoute {
		steps = append(steps,
			[]string{"-n", tp.Workload.Name, "route", "add", UplinkNet.String(), "via", EgressAddr.String()},
			[]string{"-n", tp.Workload.Name, "route", "add", InternetNet.String(), "via", EgressAddr.String()},
			[]string{"-n", tp.Internet.Name, "route", "add", WorkloadNet.String(), "via", EgressUplinkAddr.String()})
	}
	for _, args := range steps {
		if out, err := runIP(ip, args...); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// New namespaces start with forwarding off; say so rather than rely on
	// it, since the no-bypass checks depend on it.
	forward := "0\n"
	if o.DirectRoute {
		forward = "1\n"
	}
	if err := tp.Egress.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(forward), 0)
	}); err != nil {
		t.Fatalf("egress ip_forward: %v", err)
	}
	return tp
}

// Require fails (CI=true) or skips the test unless New can work: root in
// bpftest's private namespaces, cgroup v2 and iproute2. It returns the ip
// binary and the cgroup v2 mount.
func Require(t testing.TB) (ip, mount string) {
	t.Helper()
	mount = bpftest.Require(t)
	ip, err := exec.LookPath("ip")
	testenv.Require(t, err == nil, "ip (Debian package iproute2)")
	return ip, mount
}

// newNS makes the namespace <id>-<role> and the cgroup its processes start
// in (so a killed run's strays are found and killed by RemoveStale).
func newNS(t testing.TB, ip, mount, id, role string) *NS {
	t.Helper()
	name := id + "-" + role
	n := &NS{Name: name, ip: ip, Cgroup: bpftest.NewCgroup(t, mount, "ns-"+role)}
	var err error
	if n.cgroupDir, err = os.Open(n.Cgroup); err != nil {
		t.Fatal(err)
	}
	if out, err := runIP(ip, "netns", "add", name); err != nil {
		n.cgroupDir.Close()
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	// Runs before bpftest removes the cgroup.
	t.Cleanup(func() {
		if err := errors.Join(bpftest.KillCgroup(n.Cgroup, 5*time.Second), n.remove()); err != nil {
			t.Errorf("remove network namespace %s: %v", name, err)
		}
		n.cgroupDir.Close()
	})
	if out, err := runIP(ip, "-n", name, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v\n%s", name, err, out)
	}
	return n
}

// remove kills what still runs in n, deletes it and its /etc/netns entry.
func (n *NS) remove() error {
	return removeNS(n.ip, n.Name)
}

func removeNS(ip, name string) error {
	var errs []error
	if out, err := runIP(ip, "netns", "pids", name); err == nil {
		var pids []int
		for _, f := range strings.Fields(out) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				pids = append(pids, pid)
			}
		}
		waitGone(pids, 5*time.Second)
	}
	if out, err := runIP(ip, "netns", "delete", name); err != nil {
		if _, serr := os.Stat(filepath.Join("/run/netns", name)); serr == nil {
			errs = append(errs, fmt.Errorf("ip netns delete: %v: %s", err, out))
		}
	}
	if err := os.RemoveAll(filepath.Join("/etc/netns", name)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// waitGone waits (bounded) until none of pids exists any more.
func waitGone(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for bpftest.Alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func runIP(ip string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, ip, args...).CombinedOutput()
	return string(out), err
}

func sortedAddrs(m map[string]netip.Addr) []netip.Addr {
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// SetResolver makes processes started in n (through `ip netns exec`) use
// the DNS server at addr: /etc/netns/<name>/resolv.conf, removed with n.
func (n *NS) SetResolver(addr netip.Addr) error {
	dir := filepath.Join("/etc/netns", n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+addr.String()+"\noptions timeout:2 attempts:2\n"), 0o644)
}

// Do runs fn with the calling goroutine's thread inside n, so sockets fn
// creates belong to n for their whole life (listeners keep serving there
// after Do returns). fn must not start goroutines that make sockets.
func (n *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer home.Close()
	target, err := os.Open(n.Path())
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network namespace %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", n.Name, err)
	}
	defer func() {
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked, so Go ends it with this goroutine
			// instead of reusing it in the wrong namespace.
			panic(fmt.Sprintf("netns: return from %s: %v", n.Name, err))
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// Listen is net.Listen inside n.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() (err error) { l, err = net.Listen(network, addr); return err })
	return l, err
}

// DialContext connects from inside n; addr must be an IP literal and port
// (a name would be resolved by goroutines outside n).
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return nil, fmt.Errorf("netns: dial %s: want IP:port, not a name: %w", addr, err)
	}
	var c net.Conn
	err := n.Do(func() (err error) { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
	return c, err
}

// CheckNoRoute connects from inside n to each endpoint and reports every one
// that did not fail at once with "network unreachable" (ENETUNREACH): the
// "no bypass" check of a namespace without a route to them.
func (n *NS) CheckNoRoute(ctx context.Context, eps []netip.AddrPort) error {
	var errs []error
	for _, ep := range eps {
		c, err := n.DialContext(ctx, "tcp", ep.String())
		switch {
		case err == nil:
			c.Close()
			errs = append(errs, fmt.Errorf("%s: connected from %s", ep, n.Name))
		case !errors.Is(err, syscall.ENETUNREACH):
			errs = append(errs, fmt.Errorf("%s: want network unreachable, got %w", ep, err))
		}
	}
	return errors.Join(errs...)
}

// HTTPClient makes its connections inside n (URLs with IP literals only).
func (n *NS) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true}}
}

// Envoy makes an Envoy started with o run in n: the command goes through
// `ip netns exec`, admin requests are made from inside n.
func (n *NS) Envoy(o *envoyproc.Options) {
	prev := o.Cmd
	o.Cmd = func(cmd *exec.Cmd) {
		if prev != nil {
			prev(cmd)
		}
		n.Wrap(cmd)
	}
	o.Dial = n.DialContext
}

// Command is exec.Command for bin run inside n, with the project's
// .tools/bin (grpcurl) first on PATH. ctx ending kills the process and
// everything it started (its process group).
func (n *NS) Command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "PATH="+ToolPath())
	n.Wrap(cmd)
	return cmd
}

// Wrap turns a prepared, not yet started command into one that runs inside
// n: `ip netns exec <name> <cmd>`, in n's cgroup (unless cmd already names
// one), in its own process group, killed with SIGKILL if the test binary
// dies; a context given to exec.CommandContext kills the whole group.
func (n *NS) Wrap(cmd *exec.Cmd) {
	cmd.Args = append([]string{"ip", "netns", "exec", n.Name, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = n.ip
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if !cmd.SysProcAttr.UseCgroupFD {
		into(cmd, n.cgroupDir)
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if cmd.Cancel != nil {
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		// Output pipes held by a child that escaped the group must not
		// hold Wait forever.
		cmd.WaitDelay = 2 * time.Second
	}
}

// Run runs a client in n for at most timeout and returns its combined
// output; stdin may be empty.
func (n *NS) Run(timeout time.Duration, stdin, bin string, args ...string) (string, error) {
	return bounded(timeout, stdin, func(ctx context.Context) *exec.Cmd { return n.Command(ctx, bin, args...) })
}

// Shell runs `sh -c line` in n for at most timeout, so command lines stay
// as users type them.
func (n *NS) Shell(timeout time.Duration, line string) (string, error) {
	return n.Run(timeout, "", "/bin/sh", "-c", line)
}

// bounded runs the command cmdFor makes for at most timeout and returns its
// combined output.
func bounded(timeout time.Duration, stdin string, cmdFor func(context.Context) *exec.Cmd) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := cmdFor(ctx)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("%s: did not finish within %s (killed): %v", strings.Join(cmd.Args[4:], " "), timeout, err)
	}
	return out.String(), err
}

// ToolPath is the PATH clients get: .tools/bin, then the system directories.
func ToolPath() string {
	return filepath.Join(testenv.RepoRoot(), ".tools", "bin") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// Proc is a long-running process started in a namespace; it is stopped when
// the test ends.
type Proc struct {
	Cmd     *exec.Cmd
	LogPath string // its stdout and stderr
	exited  chan struct{}
}

// Start runs bin with args inside n until the test ends (SIGINT, then
// SIGKILL for the whole process group after 10 s); env is added to this
// process's environment. Its output goes to a file in t.TempDir(), printed
// (the end of it) when the test fails.
func (n *NS) Start(t testing.TB, name string, env []string, bin string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	n.Wrap(cmd)
	return StartCmd(t, name, cmd)
}

// StartCmd starts a prepared command (from NS.Wrap or
// Workload.SidecarCommand, or any other) as a Proc stopped when the test ends.
func StartCmd(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Start()
	f.Close()
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Cmd: cmd, LogPath: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- %s log (tail) ---\n%s", name, envoyproc.Tail(logPath, 4000))
		}
	})
	return p
}

// Pid is the process id (of `ip netns exec`, which became the program).
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Exited is closed once the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Log is what the process printed so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Stop interrupts the process, then kills it (and its process group, when
// it has its own) after 10 s. Safe to call more than once.
func (p *Proc) Stop() {
	select {
	case <-p.exited:
	default:
		_ = p.Cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
		}
	}
	_ = p.Cmd.Process.Kill()
	if a := p.Cmd.SysProcAttr; a != nil && a.Setpgid {
		// Anything it started in its group goes too.
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
}

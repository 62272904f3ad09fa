package bpf

import (
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

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// serveOrigDst answers every accepted connection with its SO_ORIGINAL_DST
// ("242.1.2.3:8080", or "none") and closes it, like Envoy's original_dst
// listener filter followed by a trivial upstream.
func serveOrigDst(t testing.TB, ln *net.TCPListener) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			ap, err := OriginalDst(c)
			msg := ap.String()
			if errors.Is(err, ErrNoOriginalDst) {
				msg = "none"
			} else if err != nil {
				msg = "error: " + err.Error()
			}
			c.Write([]byte(msg))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

func readAllTimeout(c net.Conn) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(io.LimitReader(c, 256))
	return string(b), err
}

func vipConfig(proxy netip.AddrPort) Config {
	return Config{VIPs: []VIPRoute{{CIDR: DefaultVIPCIDR, Proxy: proxy}}}
}

func TestTCPRedirectOriginalDst(t *testing.T) {
	mount := requireBPF(t)
	tr := attachForTest(t, mount, Config{})
	ln := listenIn(t, mount, tr.proxy)
	proxy := ln.Addr().(*net.TCPAddr).AddrPort()
	if err := tr.r.SetVIPs(vipConfig(proxy).VIPs); err != nil {
		t.Fatal(err)
	}
	serveOrigDst(t, ln)

	// A connection to a VIP from the app cgroup lands on the listener,
	// which reads the VIP back; the app sees the VIP as its peer.
	var c net.Conn
	var err error
	inCgroup(t, mount, tr.app, func() { c, err = net.DialTimeout("tcp4", "242.1.2.3:8080", 5*time.Second) })
	if err != nil {
		t.Fatalf("dial VIP from app cgroup: %v", err)
	}
	if got := c.RemoteAddr().String(); got != "242.1.2.3:8080" {
		t.Errorf("app's getpeername = %s, want 242.1.2.3:8080", got)
	}
	got, err := readAllTimeout(c)
	c.Close()
	if err != nil || got != "242.1.2.3:8080" {
		t.Fatalf("listener saw original destination %q (err %v), want 242.1.2.3:8080", got, err)
	}

	// A dual-stack socket dialing the v4-mapped VIP (Java's default) runs
	// connect6 only.
	var fd int
	inCgroup(t, mount, tr.app, func() { fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0) })
	if err != nil {
		t.Fatal(err)
	}
	mapped := netip.MustParseAddr("::ffff:242.9.8.7").As16()
	if err := unix.Connect(fd, &unix.SockaddrInet6{Addr: mapped, Port: 9090}); err != nil {
		unix.Close(fd)
		t.Fatalf("connect to ::ffff:242.9.8.7 from app cgroup: %v", err)
	}
	peer, err := unix.Getpeername(fd)
	if sa, ok := peer.(*unix.SockaddrInet6); err != nil || !ok || netip.AddrFrom16(sa.Addr).String() != "::ffff:242.9.8.7" || sa.Port != 9090 {
		t.Errorf("getpeername of v4-mapped redirect = %#v (err %v), want [::ffff:242.9.8.7]:9090", peer, err)
	}
	fc, err := net.FileConn(os.NewFile(uintptr(fd), "v6"))
	if err != nil {
		t.Fatal(err)
	}
	got, err = readAllTimeout(fc)
	fc.Close()
	if err != nil || got != "242.9.8.7:9090" {
		t.Fatalf("v4-mapped: listener saw %q (err %v), want 242.9.8.7:9090", got, err)
	}

	// A direct connection from the app cgroup to a non-VIP is not touched:
	// the listener finds no original destination.
	inCgroup(t, mount, tr.app, func() { c, err = net.DialTimeout("tcp4", proxy.String(), 5*time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	got, err = readAllTimeout(c)
	c.Close()
	if err != nil || got != "none" {
		t.Fatalf("direct connection: listener saw %q (err %v), want none", got, err)
	}

	// Outside the app cgroup nothing is rewritten: the netns has no route
	// to 242/8, so connect fails before any packet is sent.
	_, err = net.DialTimeout("tcp4", "242.1.2.3:8080", 2*time.Second)
	if !errors.Is(err, syscall.ENETUNREACH) {
		t.Fatalf("dial VIP from outside the app cgroup: err %v, want ENETUNREACH", err)
	}

	st, err := tr.r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.TCPRedirect != 1 || st.TCPV4Mapped != 1 || st.GetsockoptHit != 2 || st.PassiveMoved != 2 || st.MapErrors != 0 {
		t.Errorf("counters %s: want 1 v4 redirect, 1 v4-mapped, 2 moved, 2 getsockopt hits, 0 map errors", st)
	}
}

// TestPortReuseNoStaleOriginalDst squeezes thousands of connections through
// 32 client ports, alternating redirected connections (each to a different
// VIP) with direct ones reusing the same 4-tuples: each redirected one must
// see its own VIP and each direct one none.
func TestPortReuseNoStaleOriginalDst(t *testing.T) {
	mount := requireBPF(t)
	const portRange = "40000 40031"
	old, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte(portRange), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", old, 0) })

	tr := attachForTest(t, mount, Config{})
	ln := listenIn(t, mount, tr.proxy)
	proxy := ln.Addr().(*net.TCPAddr).AddrPort()
	if err := tr.r.SetVIPs(vipConfig(proxy).VIPs); err != nil {
		t.Fatal(err)
	}
	serveOrigDst(t, ln)

	const rounds, batch = 1500, 250 // 3,000 connections
	ports := map[int]int{}
	stale, wrong := 0, 0
	for start := 0; start < rounds; start += batch {
		appFDs := make([]int, batch)
		inCgroup(t, mount, tr.app, func() {
			for i := range appFDs {
				if appFDs[i], err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
					t.Fatal(err)
				}
			}
		})
		for i, fd := range appFDs {
			n := start + i
			vip := netip.AddrPortFrom(netip.AddrFrom4([4]byte{242, 7, byte(n >> 8), byte(n)}), uint16(1000+n))
			got, port, err := rawExchange(fd, vip)
			if err != nil {
				t.Fatalf("redirected connection %d to %s: %v", n, vip, err)
			}
			ports[port]++
			if got != vip.String() {
				wrong++
				if wrong <= 5 {
					t.Errorf("redirected connection to %s: listener saw %q", vip, got)
				}
			}
			direct, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			got, port, err = rawExchange(direct, proxy)
			if err != nil {
				t.Fatalf("direct connection %d: %v", n, err)
			}
			ports[port]++
			if got != "none" {
				stale++
				if stale <= 5 {
					t.Errorf("direct connection from port %d got a stale original destination %q", port, got)
				}
			}
		}
	}
	if len(ports) > 32 || len(ports) == 0 {
		t.Fatalf("used %d distinct client ports, want 1..32 (port range not applied)", len(ports))
	}
	t.Logf("%d connections over %d client ports; stale=%d wrong=%d", 2*rounds, len(ports), stale, wrong)

	st, err := tr.r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.TCPRedirect != rounds || st.GetsockoptHit != rounds || st.PassiveMoved != rounds {
		t.Errorf("counters %s: want %d redirects, moves and getsockopt hits", st, rounds)
	}
	// Every bridge entry was consumed: nothing is left to go stale.
	if n := countEntries(t, filepath.Join(tr.r.Dir, "tuple_orig")); n != 0 {
		t.Errorf("tuple_orig holds %d entries after all connections closed, want 0", n)
	}
	if n := countEntries(t, filepath.Join(tr.r.Dir, "cookie_orig")); n != 0 {
		t.Errorf("cookie_orig holds %d entries after all sockets closed, want 0", n)
	}
}

// rawExchange connects fd to dst, reads the listener's answer, resets the
// connection (so no TIME_WAIT blocks port reuse) and closes fd.
func rawExchange(fd int, dst netip.AddrPort) (string, int, error) {
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 5}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}); err != nil {
		return "", 0, fmt.Errorf("connect: %w", err)
	}
	port := 0
	if sa, err := unix.Getsockname(fd); err == nil {
		port = sa.(*unix.SockaddrInet4).Port
	}
	var buf [256]byte
	n, interrupted := 0, 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		// A signal (Go's preemption, the test runner's timers) can interrupt a
		// raw read; retry a bounded number of times, each bounded by SO_RCVTIMEO.
		if err == unix.EINTR && interrupted < 100 {
			interrupted++
			continue
		}
		if err != nil {
			return "", port, fmt.Errorf("read: %w", err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	return string(buf[:n]), port, nil
}

func countEntries(t testing.TB, pin string) int {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var k, v []byte
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) && n < 1_000_000 {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// attachedPrograms counts programs attached directly to cgroup dir for the
// attach types this package uses.
func attachedPrograms(t testing.TB, dir string) int {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[ebpf.AttachType]bool{}
	n := 0
	for _, a := range attachments {
		if seen[a.typ] {
			continue
		}
		seen[a.typ] = true
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: a.typ})
		if err != nil {
			t.Fatalf("query %s programs on %s: %v", a.typ, dir, err)
		}
		n += len(res.Programs)
	}
	return n
}

func TestAttachIdempotentStatusDetach(t *testing.T) {
	mount := requireBPF(t)
	app, proxy := newCgroup(t, mount, "app"), newCgroup(t, mount, "proxy")
	name := filepath.Base(app)
	cfg := Config{VIPs: []VIPRoute{{CIDR: DefaultVIPCIDR, Proxy: netip.MustParseAddrPort("127.0.0.1:15001")}}}
	t.Cleanup(func() { Detach(testBPFFS, name) })

	// Relative cgroup paths are resolved against the cgroup v2 mount.
	r1, attached, err := Attach(Spec{Name: name, AppCgroup: filepath.Base(app), ProxyCgroup: proxy, Config: cfg, BPFFS: testBPFFS})
	if err != nil || !attached {
		t.Fatalf("first attach: attached=%v err=%v", attached, err)
	}
	r1.Close()
	st1, err := Status(testBPFFS, name)
	if err != nil || !st1.Complete() {
		t.Fatalf("status after attach: %v\n%s", err, st1)
	}
	if st1.AppCgroup != app || st1.ProxyCgroup != proxy {
		t.Errorf("status cgroups %s / %s, want %s / %s", st1.AppCgroup, st1.ProxyCgroup, app, proxy)
	}
	if n := attachedPrograms(t, app); n != 8 {
		t.Errorf("%d programs on the app cgroup, want 8", n)
	}
	if n := attachedPrograms(t, proxy); n != 2 {
		t.Errorf("%d programs on the proxy cgroup, want 2", n)
	}

	// Attaching again is a no-op apart from the new configuration.
	uid := uint32(5678)
	cfg2 := cfg
	cfg2.DNS = netip.MustParseAddrPort("127.0.0.1:15053")
	cfg2.BypassUID = &uid
	r2, attached, err := Attach(Spec{Name: name, AppCgroup: app, ProxyCgroup: proxy, Config: cfg2, BPFFS: testBPFFS})
	if err != nil || attached {
		t.Fatalf("second attach: attached=%v err=%v, want attached=false", attached, err)
	}
	got, err := r2.Config()
	r2.Close()
	if err != nil || got.DNS != cfg2.DNS || got.BypassUID == nil || *got.BypassUID != uid || len(got.VIPs) != 1 {
		t.Errorf("config after re-attach = %+v (err %v)", got, err)
	}
	st2, _ := Status(testBPFFS, name)
	for i := range st1.Links {
		if st1.Links[i].LinkID != st2.Links[i].LinkID {
			t.Errorf("link %s replaced on idempotent attach", st1.Links[i].Pin)
		}
	}
	if n := attachedPrograms(t, app); n != 8 {
		t.Errorf("%d programs on the app cgroup after re-attach, want 8", n)
	}

	// The CLI shows the same attachment.
	var out, errOut strings.Builder
	if code := RunCLI([]string{"status", "--bpffs", testBPFFS, "--dataplane", name}, &out, &errOut); code != 0 {
		t.Errorf("redirect status exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{name + ": attached", "242.0.0.0/8 -> 127.0.0.1:15001", "udp/53 -> 127.0.0.1:15053", "bypass uid:   5678", "links:        10 of 10"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}

	// Detach removes every link and pin; the VIP is unreachable again.
	out.Reset()
	if code := RunCLI([]string{"detach", "--bpffs", testBPFFS, "--dataplane", name}, &out, &errOut); code != 0 {
		t.Fatalf("redirect detach exit %d: %s", code, errOut.String())
	}
	if _, err := os.Stat(PinDir(testBPFFS, name)); !os.IsNotExist(err) {
		t.Errorf("pin directory still there after detach: %v", err)
	}
	if n := attachedPrograms(t, app) + attachedPrograms(t, proxy); n != 0 {
		t.Errorf("%d programs still attached after detach", n)
	}
	inCgroup(t, mount, app, func() { _, err = net.DialTimeout("tcp4", "242.1.2.3:8080", 2*time.Second) })
	if !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("dial VIP after detach: %v, want ENETUNREACH", err)
	}
	if _, err := Status(testBPFFS, name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("status after detach: %v, want not-exist", err)
	}
	if err := Detach(testBPFFS, name); err != nil {
		t.Errorf("second detach: %v", err)
	}
}

func TestAttachReplacesWhenCgroupChanges(t *testing.T) {
	mount := requireBPF(t)
	app, proxy, proxy2 := newCgroup(t, mount, "app"), newCgroup(t, mount, "proxy"), newCgroup(t, mount, "proxy2")
	name := filepath.Base(app)
	t.Cleanup(func() { Detach(testBPFFS, name) })
	for i, p := range []string{proxy, proxy2} {
		r, attached, err := Attach(Spec{Name: name, AppCgroup: app, ProxyCgroup: p, BPFFS: testBPFFS})
		if err != nil || !attached {
			t.Fatalf("attach %d: attached=%v err=%v", i, attached, err)
		}
		r.Close()
	}
	if n := attachedPrograms(t, proxy); n != 0 {
		t.Errorf("%d programs left on the old proxy cgroup", n)
	}
	if n := attachedPrograms(t, proxy2); n != 2 {
		t.Errorf("%d programs on the new proxy cgroup, want 2", n)
	}
	if n := attachedPrograms(t, app); n != 8 {
		t.Errorf("%d programs on the app cgroup, want 8 (no duplicates)", n)
	}
}

func TestAttachRejectsBadInput(t *testing.T) {
	mount := requireBPF(t)
	app := newCgroup(t, mount, "app")
	if err := os.Mkdir(app+"/envoy", 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(app + "/envoy") })
	cases := []struct {
		spec Spec
		want string
	}{
		{Spec{Name: "../x", AppCgroup: app}, "invalid name"},
		{Spec{Name: "ok", AppCgroup: filepath.Join(app, "nope")}, "does not exist"},
		{Spec{Name: "ok", AppCgroup: "/tmp"}, "not a cgroup v2 directory"},
		{Spec{Name: "ok", AppCgroup: app, ProxyCgroup: app}, "must run outside"},
		{Spec{Name: "ok", AppCgroup: app, ProxyCgroup: app + "/envoy"}, "inside the app cgroup"},
		{Spec{Name: "ok", AppCgroup: app, Config: Config{VIPs: []VIPRoute{{CIDR: DefaultVIPCIDR, Proxy: netip.MustParseAddrPort("242.0.0.1:1")}}}}, "inside its own VIP range"},
	}
	for _, c := range cases {
		c.spec.BPFFS = testBPFFS
		_, _, err := Attach(c.spec)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Attach(%+v) = %v, want error containing %q", c.spec, err, c.want)
		}
	}
}

// TestUnprivilegedAttachFailsClearly runs Attach as nobody without
// capabilities: the error must name the missing privileges.
func TestUnprivilegedAttachFailsClearly(t *testing.T) {
	requireBPF(t)
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), helperEnv+"=attach-unprivileged")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "needs root, or CAP_BPF+CAP_NET_ADMIN") {
		t.Errorf("unprivileged attach said %q, want the privilege message", out)
	}
}

func TestBypassUID(t *testing.T) {
	mount := requireBPF(t)
	tr := attachForTest(t, mount, Config{})
	ln := listenIn(t, mount, tr.proxy)
	proxy := ln.Addr().(*net.TCPAddr).AddrPort()
	serveOrigDst(t, ln)
	uid := uint32(0) // the test runs as root: its own sockets are exempt
	if err := tr.r.SetConfig(Config{VIPs: vipConfig(proxy).VIPs, BypassUID: &uid}); err != nil {
		t.Fatal(err)
	}
	var err error
	inCgroup(t, mount, tr.app, func() { _, err = net.DialTimeout("tcp4", "242.1.2.3:8080", 2*time.Second) })
	if !errors.Is(err, syscall.ENETUNREACH) {
		t.Fatalf("dial VIP as bypassed uid: %v, want ENETUNREACH (not redirected)", err)
	}
	// Removing the bypass live redirects again.
	if err := tr.r.SetConfig(vipConfig(proxy)); err != nil {
		t.Fatal(err)
	}
	var c net.Conn
	inCgroup(t, mount, tr.app, func() { c, err = net.DialTimeout("tcp4", "242.1.2.3:8080", 2*time.Second) })
	if err != nil {
		t.Fatalf("dial VIP after removing bypass: %v", err)
	}
	got, _ := readAllTimeout(c)
	c.Close()
	if got != "242.1.2.3:8080" {
		t.Errorf("listener saw %q, want 242.1.2.3:8080", got)
	}
	if st, _ := tr.r.Stats(); st.Bypass != 1 {
		t.Errorf("bypass counter %d, want 1", st.Bypass)
	}
}

func TestBypassMark(t *testing.T) {
	mount := requireBPF(t)
	tr := attachForTest(t, mount, Config{})
	ln := listenIn(t, mount, tr.proxy)
	mark := uint32(0x539)
	if err := tr.r.SetConfig(Config{VIPs: vipConfig(ln.Addr().(*net.TCPAddr).AddrPort()).VIPs, BypassMark: &mark}); err != nil {
		t.Fatal(err)
	}
	serveOrigDst(t, ln)
	dial := func(soMark int) error {
		var fd int
		var err error
		inCgroup(t, mount, tr.app, func() { fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0) })
		if err != nil {
			return err
		}
		if soMark != 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, soMark); err != nil {
				unix.Close(fd)
				return err
			}
		}
		got, _, err := rawExchange(fd, netip.MustParseAddrPort("242.1.2.3:8080"))
		if err == nil && got != "242.1.2.3:8080" {
			return fmt.Errorf("listener saw %q", got)
		}
		return err
	}
	if err := dial(int(mark)); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("socket with the bypass mark: %v, want ENETUNREACH (not redirected)", err)
	}
	if err := dial(0x1); err != nil {
		t.Errorf("socket with another mark: %v, want redirected", err)
	}
}

func TestCLIAttachCreatesCgroupsConcurrentSafe(t *testing.T) {
	mount := requireBPF(t)
	base := fmt.Sprintf("meshext-test-%d-cli", os.Getpid())
	app, proxy := base+"/app", base+"/proxy"
	name := "cli-" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() {
		Detach(testBPFFS, name)
		for _, d := range []string{app, proxy, base} {
			os.Remove(filepath.Join(mount, d))
		}
	})
	args := []string{"attach", "--bpffs", testBPFFS, "--dataplane", name, "--cgroup", app, "--proxy-cgroup", "/" + proxy,
		"--create", "--cgroup-proxy", app + "=127.0.0.1:15009", "--vip", "242.0.0.0/8=127.0.0.1:15001", "--vip", "10.250.0.0/16=127.0.0.1:15002", "--dns", "off", "--bypass-mark", "0x539"}

	// Two attaches at once: the lock makes one attach and the other find it.
	type result struct {
		code     int
		out, err string
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			var out, errOut strings.Builder
			code := RunCLI(args, &out, &errOut)
			results <- result{code, out.String(), errOut.String()}
		}()
	}
	attachedCount := 0
	for range 2 {
		r := <-results
		if r.code != 0 {
			t.Fatalf("redirect attach exit %d: %s%s", r.code, r.out, r.err)
		}
		if strings.HasPrefix(r.out, "attached ") {
			attachedCount++
		} else if !strings.HasPrefix(r.out, name+" was already attached") {
			t.Errorf("unexpected attach output %q", r.out)
		}
	}
	if attachedCount != 1 {
		t.Errorf("%d of 2 concurrent attaches attached, want exactly 1", attachedCount)
	}
	if n := attachedPrograms(t, filepath.Join(mount, app)); n != 8 {
		t.Errorf("%d programs on the app cgroup, want 8", n)
	}
	st, err := Status(testBPFFS, name)
	if err != nil || !st.Complete() {
		t.Fatalf("status: %v\n%s", err, st)
	}
	appID, _ := CgroupID(filepath.Join(mount, app))
	if len(st.Config.VIPs) != 2 || st.Config.DNS.IsValid() || st.Config.BypassMark == nil || *st.Config.BypassMark != 0x539 ||
		st.Config.CgroupProxies[appID] != netip.MustParseAddrPort("127.0.0.1:15009") {
		t.Errorf("config from CLI flags = %+v", st.Config)
	}

	// Removing the app cgroup under a live attachment: status says so,
	// detach still cleans up.
	if err := os.Remove(filepath.Join(mount, app)); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	if code := RunCLI([]string{"status", "--bpffs", testBPFFS}, &out, &errOut); code != 1 || !strings.Contains(out.String(), "BROKEN") {
		t.Errorf("status after rmdir: exit %d, output %q; want exit 1 and BROKEN", code, out.String())
	}
	if code := RunCLI([]string{"detach", "--bpffs", testBPFFS, "--dataplane", name}, &out, &errOut); code != 0 {
		t.Fatalf("detach after rmdir: exit %d: %s", code, errOut.String())
	}
	if n := attachedPrograms(t, filepath.Join(mount, proxy)); n != 0 {
		t.Errorf("%d programs left on the proxy cgroup after detach", n)
	}
	if names, _ := List(testBPFFS); len(names) != 0 {
		t.Errorf("attachments left after detach: %v", names)
	}
}

// TestPerCgroupProxy: one attachment on a parent cgroup serves two
// workloads in child cgroups, each sent to its own listener.
func TestPerCgroupProxy(t *testing.T) {
	mount := requireBPF(t)
	tr := attachForTest(t, mount, Config{})
	w1, w2 := filepath.Join(tr.app, "w1"), filepath.Join(tr.app, "w2")
	for _, d := range []string{w1, w2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(d) })
	}
	ln1, ln2 := listenIn(t, mount, tr.proxy), listenIn(t, mount, tr.proxy)
	serveOrigDst(t, ln1)
	// ln2 tags its answers so the test can tell which listener answered.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln2.AcceptTCP()
			if err != nil {
				return
			}
			ap, err := OriginalDst(c)
			fmt.Fprintf(c, "ln2 %s %v", ap, err)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln2.Close(); <-done })

	p1, p2 := ln1.Addr().(*net.TCPAddr).AddrPort(), ln2.Addr().(*net.TCPAddr).AddrPort()
	if err := tr.r.SetVIPs(vipConfig(p1).VIPs); err != nil {
		t.Fatal(err)
	}
	if err := tr.r.SetCgroupProxy(w2, p2); err != nil {
		t.Fatal(err)
	}
	dialFrom := func(cg string) string {
		var c net.Conn
		var err error
		inCgroup(t, mount, cg, func() { c, err = net.DialTimeout("tcp4", "242.1.2.3:8080", 5*time.Second) })
		if err != nil {
			t.Fatalf("dial from %s: %v", cg, err)
		}
		got, _ := readAllTimeout(c)
		c.Close()
		return got
	}
	if got := dialFrom(w1); got != "242.1.2.3:8080" {
		t.Errorf("workload 1 (range default): %q, want the default listener to see 242.1.2.3:8080", got)
	}
	if got := dialFrom(w2); got != "ln2 242.1.2.3:8080 <nil>" {
		t.Errorf("workload 2 (own listener): %q, want ln2 to see 242.1.2.3:8080", got)
	}
	var out, errOut strings.Builder
	RunCLI([]string{"status", "--bpffs", testBPFFS, "--dataplane", tr.name}, &out, &errOut)
	if !strings.Contains(out.String(), "cgroup proxy: "+w2) {
		t.Errorf("status lacks the per-cgroup proxy of %s:\n%s", w2, out.String())
	}
	// Removing the entry falls back to the range's listener.
	if err := tr.r.SetCgroupProxy(w2, netip.AddrPort{}); err != nil {
		t.Fatal(err)
	}
	if got := dialFrom(w2); got != "242.1.2.3:8080" {
		t.Errorf("workload 2 after removing its proxy: %q", got)
	}
}

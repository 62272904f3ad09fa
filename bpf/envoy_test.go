package bpf

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshext/meshext/bpf/bpftest"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testenv"
)

// envoyTransparentConfig is a minimal transparent listener: the
// original_dst listener filter restores the VIP, and the only filter chain
// matches testVIP:8080, so a connection reaches the backend only if Envoy
// saw the right original destination.
const envoyTransparentConfig = `
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
  - name: transparent
    address: {socket_address: {address: 127.0.0.1, port_value: LISTEN_PORT}}
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}
    filter_chains:
    - filter_chain_match:
        prefix_ranges: [{address_prefix: VIP, prefix_len: 32}]
        destination_port: 8080
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: vip
          cluster: backend
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ACCESS_LOG
              log_format: {text_format_source: {inline_string: "orig=%DOWNSTREAM_LOCAL_ADDRESS%\n"}}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: backend
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: BACKEND_PORT}}}}]}]
`

// TestEnvoyOriginalDst runs a real Envoy in the proxy cgroup. From the app
// cgroup: a client dialing the VIP reaches the backend through the filter
// chain that matches the VIP, and Envoy logs the VIP as the downstream local
// address; curl, unchanged, resolves a name through the DNS redirect (glibc,
// A and AAAA ::ffff:VIP) and gets the backend's page through Envoy.
func TestEnvoyOriginalDst(t *testing.T) {
	mount := requireBPF(t)
	envoy := testenv.Envoy(t)
	curl := testenv.Tool(t, "curl")
	tr := attachForTest(t, mount, Config{DNS: startDNS(t)})

	backend, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from backend, host="+r.Host)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(backend)
	defer srv.Close()

	// The netns is private, so Envoy can use the production port.
	const listenPort = 15001
	dir := t.TempDir()
	accessLog := filepath.Join(dir, "access.log")
	cfg := strings.NewReplacer(
		"LISTEN_PORT", strconv.Itoa(listenPort),
		"BACKEND_PORT", strconv.Itoa(backend.Addr().(*net.TCPAddr).Port),
		"ACCESS_LOG", accessLog,
		"VIP", testVIP,
	).Replace(envoyTransparentConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	listenAddr := "127.0.0.1:" + strconv.Itoa(listenPort)
	envoyProc := envoyproc.StartT(t, envoyproc.Options{Bin: envoy, Bootstrap: []byte(cfg), WorkDir: dir,
		LogLevel: "warn", Args: []string{"--file-flush-interval-msec", "100"},
		Cmd: func(cmd *exec.Cmd) {
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			bpftest.CommandIn(t, cmd, tr.proxy) // Envoy creates its listener in the proxy cgroup
		},
		// Ready once the transparent listener accepts connections.
		Ready: func(*envoyproc.Proc) bool {
			c, err := net.DialTimeout("tcp4", listenAddr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		}})
	if err := tr.r.SetVIPs(vipConfig(netipAddrPort("127.0.0.1", listenPort)).VIPs); err != nil {
		t.Fatal(err)
	}

	get := func(vip string) (string, error) {
		var c net.Conn
		var err error
		inCgroup(t, mount, tr.app, func() { c, err = net.DialTimeout("tcp4", vip, 5*time.Second) })
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.0\r\nHost: raw\r\n\r\n")
		b, err := io.ReadAll(io.LimitReader(c, 4096))
		return string(b), err
	}
	vip := testVIP + ":8080"
	if got, err := get(vip); err != nil || !strings.Contains(got, "hello from backend, host=raw") {
		t.Fatalf("through Envoy to %s: got %q, err %v\nenvoy:\n%s", vip, got, err, envoyProc.LogText())
	}
	// A VIP no filter chain matches is closed by Envoy: the match used
	// the original destination, not the listener address.
	if got, _ := get("242.0.0.8:8080"); got != "" {
		t.Errorf("unmatched VIP 242.0.0.8:8080 reached the backend: %q", got)
	}

	// curl, unchanged, by name: DNS and TCP both redirected.
	curlCmd := exec.CommandContext(ctx, curl, "-sS", "--max-time", "10", "http://mes-http.svc.meshext.local:8080/")
	bpftest.CommandIn(t, curlCmd, tr.app)
	out, err := curlCmd.CombinedOutput()
	if err != nil || string(out) != "hello from backend, host=mes-http.svc.meshext.local:8080" {
		t.Errorf("curl by name in the app cgroup: %q, err %v\nenvoy:\n%s", out, err, envoyProc.LogText())
	}

	// curl -6: only the AAAA answer (::ffff:VIP) on a dual-stack socket,
	// redirected by connect6.
	curl6 := exec.CommandContext(ctx, curl, "-6", "-sS", "--max-time", "10", "http://mes-http.svc.meshext.local:8080/")
	bpftest.CommandIn(t, curl6, tr.app)
	out, err = curl6.CombinedOutput()
	if err != nil || string(out) != "hello from backend, host=mes-http.svc.meshext.local:8080" {
		t.Errorf("curl -6 by name in the app cgroup: %q, err %v", out, err)
	}

	// Envoy writes the access log asynchronously (flushes about every second).
	var logText string
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		b, _ := os.ReadFile(accessLog)
		if logText = string(b); strings.Count(logText, "orig="+vip) >= 3 {
			break
		}
	}
	if n := strings.Count(logText, "orig="+vip); n < 3 {
		t.Errorf("Envoy access log %q: want >= 3 connections with orig=%s", logText, vip)
	}
	st, err := tr.r.Stats()
	if err != nil || st.TCPRedirect+st.TCPV4Mapped < 4 || st.TCPV4Mapped < 1 ||
		st.GetsockoptHit != st.TCPRedirect+st.TCPV4Mapped || st.DNSRedirect == 0 || st.DNSReplyRestored == 0 {
		// curl's happy eyeballs picks either family, so only bounds hold.
		t.Errorf("counters %s (err %v): want >= 4 redirects (>= 1 v4-mapped), each answered by getsockopt, and DNS redirected", st, err)
	}
	t.Logf("counters: %s", st)
}

func netipAddrPort(ip string, port int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
}

package bpf

import (
	"bufio"
	"context"
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

	"github.com/meshext/meshext/bpf/bpftest"
	"github.com/meshext/meshext/e2e/testenv"
)

// envoyTransparentConfig is a minimal transparent listener: the
// original_dst listener filter restores the VIP, and the only filter chain
// matches 242.1.2.3:8080, so a connection reaches the backend only if Envoy
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
        prefix_ranges: [{address_prefix: 242.1.2.3, prefix_len: 32}]
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

// TestEnvoyOriginalDst runs a real Envoy in the proxy cgroup: a client in
// the app cgroup dialing the VIP reaches the backend through the filter
// chain that matches the VIP, and Envoy logs the VIP as the downstream
// local address.
func TestEnvoyOriginalDst(t *testing.T) {
	mount := requireBPF(t)
	envoy := testenv.Envoy(t)
	tr := attachForTest(t, mount, Config{})

	// Backend: replies "backend:" + the first line it gets.
	backend, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, "backend:"+line)
			}()
		}
	}()

	// The netns is private, so Envoy can use the production port.
	const listenPort = 15001
	dir := t.TempDir()
	accessLog := filepath.Join(dir, "access.log")
	cfg := strings.NewReplacer(
		"LISTEN_PORT", strconv.Itoa(listenPort),
		"BACKEND_PORT", strconv.Itoa(backend.Addr().(*net.TCPAddr).Port),
		"ACCESS_LOG", accessLog,
	).Replace(envoyTransparentConfig)
	cfgPath := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, envoy, "-c", cfgPath, "--disable-hot-restart", "--log-level", "warn", "--concurrency", "1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	bpftest.CommandIn(t, cmd, tr.proxy) // Envoy creates its listener in the proxy cgroup
	var envoyLog strings.Builder
	cmd.Stdout, cmd.Stderr = &envoyLog, &envoyLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	if err := tr.r.SetVIPs(vipConfig(netipAddrPort("127.0.0.1", listenPort)).VIPs); err != nil {
		t.Fatal(err)
	}

	// Wait (bounded) for Envoy's listener.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(listenPort), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("envoy exited:\n%s", envoyLog.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("envoy listener not up after 30s:\n%s", envoyLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	exchange := func(vip string) (string, error) {
		var c net.Conn
		var err error
		inCgroup(t, mount, tr.app, func() { c, err = net.DialTimeout("tcp4", vip, 5*time.Second) })
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "hello\n")
		b, err := io.ReadAll(io.LimitReader(c, 256))
		return string(b), err
	}
	if got, err := exchange("242.1.2.3:8080"); err != nil || got != "backend:hello\n" {
		t.Fatalf("through Envoy to 242.1.2.3:8080: got %q, err %v\nenvoy:\n%s", got, err, envoyLog.String())
	}
	// A VIP no filter chain matches is closed by Envoy: the match used
	// the original destination, not the listener address.
	if got, _ := exchange("242.1.2.4:8080"); got != "" {
		t.Errorf("unmatched VIP 242.1.2.4:8080 reached the backend: %q", got)
	}

	// Envoy writes the access log asynchronously (flushes about every second).
	var logText string
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		b, _ := os.ReadFile(accessLog)
		if logText = string(b); strings.Contains(logText, "orig=") {
			break
		}
	}
	if !strings.Contains(logText, "orig=242.1.2.3:8080") {
		t.Errorf("Envoy access log %q lacks orig=242.1.2.3:8080", logText)
	}
	if st, err := tr.r.Stats(); err != nil || st.GetsockoptHit < 2 {
		t.Errorf("counters %s (err %v): want SO_ORIGINAL_DST answered for both connections", st, err)
	}
}

func netipAddrPort(ip string, port int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))
}

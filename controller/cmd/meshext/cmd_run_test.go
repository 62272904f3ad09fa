package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshext/meshext/controller/run"
	"github.com/meshext/meshext/controller/xds/envoytest"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
)

// TestRunCommandWithEnvoy drives the real binaries as a user does:
// `meshext run` on a drop directory, `meshext bootstrap --xds file` for a real
// Envoy, traffic through the outbound listener, a live change, then SIGTERM.
func TestRunCommandWithEnvoy(t *testing.T) {
	t.Parallel()
	testenv.Envoy(t)
	bin := filepath.Join(t.TempDir(), "meshext")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	drop, xdsDir, state := t.TempDir(), t.TempDir(), t.TempDir()
	echo := testnet.EchoServer(t)
	outPort, statusPort, adminPort := testnet.FreePort(t), testnet.FreePort(t), testnet.FreePort(t)
	runTestWrite(t, drop, "gen.yaml", runTestGenerator)
	runTestWrite(t, drop, "dp.yaml", fmt.Sprintf(`type: Dataplane
mesh: default
name: dp
networking:
  address: 127.0.0.1
  transparentProxying:
    redirectPortOutbound: %d
  outbound:
  - port: %d
    backendRef:
      kind: MeshExternalService
      name: mes-a
`, testnet.FreePort(t), outPort))
	runTestWrite(t, drop, "a.yaml", runTestMES("mes-a", 4000, echo))

	proc := startRun(t, bin, "--dir", drop, "--state-dir", state, "--xds", "file", "--xds-dir", xdsDir,
		"--status-listen", fmt.Sprintf("127.0.0.1:%d", statusPort), "--debounce", "50ms")

	// /healthz turns ok once the first config is delivered.
	health := fmt.Sprintf("http://127.0.0.1:%d/healthz", statusPort)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(health)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("meshext run not healthy within 15s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	boot := filepath.Join(t.TempDir(), "bootstrap.json")
	if out, err := exec.Command(bin, "bootstrap", "--xds", "file", "--xds-dir", xdsDir, "--node", "default.dp",
		"--admin-port", fmt.Sprint(adminPort), "--out", boot).CombinedOutput(); err != nil {
		t.Fatalf("meshext bootstrap: %v\n%s", err, out)
	}
	bootText, err := os.ReadFile(boot)
	if err != nil {
		t.Fatal(err)
	}
	e := envoytest.Start(t, string(bootText))
	e.WaitConfig(t, 15*time.Second, "mes-a", func(c *envoytest.Config) bool { return c.Clusters["default_mes-a__default_extsvc_4000"] != "" })
	testnet.EchoThrough(t, fmt.Sprintf("127.0.0.1:%d", outPort), "hello through meshext\n", 15*time.Second)

	runTestWrite(t, drop, "b.yaml", runTestMES("mes-b", 4001, echo))
	e.WaitConfig(t, 15*time.Second, "mes-b added", func(c *envoytest.Config) bool { return c.Clusters["default_mes-b__default_extsvc_4001"] != "" })

	proc.stop(t)
	if !strings.Contains(proc.log.String(), "meshext stopped") {
		t.Errorf("no clean-stop log line")
	}
	if _, err := os.Stat(filepath.Join(state, "status.json")); err != nil {
		t.Errorf("status.json not written: %v", err)
	}
}

// runTestGenerator gives every MeshExternalService <name>.svc.meshext.local.
const runTestGenerator = `type: HostnameGenerator
name: gen
mesh: default
spec:
  selector:
    meshExternalService:
      matchLabels:
        kuma.io/origin: zone
  template: "{{ .DisplayName }}.svc.meshext.local"
`

func runTestMES(name string, port, endpointPort int) string {
	return fmt.Sprintf(`type: MeshExternalService
name: %s
mesh: default
spec:
  match:
    type: HostnameGenerator
    port: %d
    protocol: tcp
  endpoints:
  - address: 127.0.0.1
    port: %d
`, name, port, endpointPort)
}

// runTestWrite drops a file atomically, as a careful tool would.
func runTestWrite(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// TestRunSpecialFilesAndSIGTERM is the reported freeze: a FIFO named *.yaml
// in the drop directory used to block the first load for good, so /healthz
// never answered and SIGTERM was ignored. Now the FIFO (and a directory
// named *.yaml) is a per-file problem in /status, the rest is served, and
// SIGTERM stops the process within seconds.
func TestRunSpecialFilesAndSIGTERM(t *testing.T) {
	t.Parallel()
	bin := buildValidateTestBinary(t)
	drop, xdsDir := t.TempDir(), t.TempDir()
	runTestWrite(t, drop, "a.yaml", runTestMES("mes-a", 4000, 9001))
	if err := syscall.Mkfifo(filepath.Join(drop, "fifo.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(drop, "dir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	statusPort := testnet.FreePort(t)
	proc := startRun(t, bin, "--dir", drop, "--xds", "file", "--xds-dir", xdsDir, "--redirect-bpffs", "",
		"--status-listen", fmt.Sprintf("127.0.0.1:%d", statusPort), "--debounce", "50ms")

	client := &http.Client{Timeout: 2 * time.Second}
	var status string
	for deadline := time.Now().Add(15 * time.Second); ; {
		if resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/status", statusPort)); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			status = string(body)
			if strings.Contains(status, `"name": "mes-a"`) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mes-a not served within 15s; last /status: %s", status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{"cannot read: not a regular file: it is a named pipe (FIFO)", "cannot read: not a regular file: it is a directory"} {
		if !strings.Contains(status, want) {
			t.Errorf("/status lacks %q", want)
		}
	}

	proc.stop(t)
}

// runProcess is a `meshext run` a test started: killed at cleanup unless
// stopped, its log printed when the test failed.
type runProcess struct {
	cmd     *exec.Cmd
	log     testenv.SyncBuffer
	exited  chan error
	stopped bool
}

func startRun(t *testing.T, bin string, args ...string) *runProcess {
	t.Helper()
	p := &runProcess{cmd: exec.Command(bin, append([]string{"run"}, args...)...), exited: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if !p.stopped {
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("meshext run log:\n%s", p.log.String())
		}
	})
	return p
}

// shutdownGrace is how long a test waits for `meshext run` to stop after
// SIGTERM: its own shutdown timeout plus a margin for a loaded machine.
const shutdownGrace = run.ShutdownTimeout + 3*time.Second

// stop sends SIGTERM and expects a clean exit within shutdownGrace.
func (p *runProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		p.stopped = true
		if err != nil {
			t.Fatalf("meshext run exited with %v after SIGTERM", err)
		}
	case <-time.After(shutdownGrace):
		t.Fatalf("meshext run did not stop within %v of SIGTERM", shutdownGrace)
	}
}

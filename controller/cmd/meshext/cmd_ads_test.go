package main

import (
	"bytes"
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

	"github.com/meshext/meshext/controller/pki"
	"github.com/meshext/meshext/controller/run"
	"github.com/meshext/meshext/controller/xds/envoytest"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
)

// startMeshextRun runs `meshext run` with args and waits until /healthz is ok.
func startMeshextRun(t *testing.T, bin string, args ...string) {
	t.Helper()
	status := fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t))
	var log testenv.SyncBuffer
	cmd := exec.Command(bin, append([]string{"run", "--status-listen", status, "--debounce", "50ms"}, args...)...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("meshext run %q log:\n%s", args, log.String())
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; {
		resp, err := http.Get("http://" + status + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("meshext run exited: %v\n%s", err, log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("meshext run not healthy within 15s\n%s", log.String())
		}
	}
}

// bootstrapFile runs `meshext bootstrap` and returns the bootstrap's text.
func bootstrapFile(t *testing.T, bin, out string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"bootstrap", "--xds", "ads", "--admin-port", fmt.Sprint(testnet.FreePort(t)), "--out", out}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("meshext bootstrap %q: %v\n%s", args, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// adsDropDir has two Dataplanes (nodes default.dp-a and default.dp-b) and
// one MeshExternalService.
func adsDropDir(t *testing.T) string {
	drop := t.TempDir()
	runTestWrite(t, drop, "gen.yaml", runTestGenerator)
	for _, dp := range []string{"dp-a", "dp-b"} {
		runTestWrite(t, drop, dp+".yaml", fmt.Sprintf(`type: Dataplane
mesh: default
name: %s
networking:
  address: 127.0.0.1
  transparentProxying:
    redirectPortOutbound: %d
`, dp, testnet.FreePort(t)))
	}
	runTestWrite(t, drop, "a.yaml", runTestMES("mes-a", 4000, testnet.FreePort(t)))
	return drop
}

const mesACluster = "default_mes-a__default_extsvc_4000" // Kuma's destination name (controller/names)

// TestADSCommandWithEnvoy: real Envoys bootstrapped by `meshext bootstrap`
// get their config from `meshext run` over the default unix socket and over
// mTLS; an Envoy holding node A's certificate that asks as node B gets nothing.
func TestADSCommandWithEnvoy(t *testing.T) {
	t.Parallel()
	testenv.Envoy(t)
	bin := buildValidateTestBinary(t)
	drop := adsDropDir(t)

	t.Run("unix socket", func(t *testing.T) {
		t.Parallel()
		state := t.TempDir()
		startMeshextRun(t, bin, "--dir", drop, "--state-dir", state, "--xds", "ads")
		sock := run.DefaultADSSocket(state)
		for path, want := range map[string]os.FileMode{sock: 0o600, filepath.Dir(sock): 0o700} {
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
				t.Errorf("%s: mode %v (%v), want %04o", path, st.Mode().Perm(), err, want)
			}
		}
		boot := bootstrapFile(t, bin, filepath.Join(t.TempDir(), "boot.json"), "--ads-address", "unix:"+sock, "--node", "default.dp-a")
		if !strings.Contains(boot, `"pipe"`) {
			t.Errorf("unix bootstrap without a pipe address:\n%s", boot)
		}
		e := envoytest.Start(t, boot)
		e.WaitConfig(t, 15*time.Second, "mes-a over the unix socket", func(c *envoytest.Config) bool { return c.Clusters[mesACluster] != "" })
	})

	t.Run("mTLS", func(t *testing.T) {
		t.Parallel()
		state, certs := t.TempDir(), t.TempDir()
		ads := fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t))
		startMeshextRun(t, bin, "--dir", drop, "--state-dir", state, "--xds", "ads", "--ads-listen", ads)
		boot := bootstrapFile(t, bin, filepath.Join(certs, "boot.json"), "--ads-address", ads, "--state-dir", state, "--node", "default.dp-a", "--delta")
		for name, want := range map[string]os.FileMode{"default.dp-a-xds-client.key": 0o600, "default.dp-a-xds-client.crt": 0o600, "xds-ca.crt": 0o644} {
			if st, err := os.Stat(filepath.Join(certs, name)); err != nil || st.Mode().Perm() != want {
				t.Errorf("%s: mode %v (%v), want %04o", name, st.Mode().Perm(), err, want)
			}
		}
		certPEM, err := os.ReadFile(filepath.Join(certs, "default.dp-a-xds-client.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if c, err := pki.ParseCertsPEM(certPEM); err != nil || len(c[0].URIs) != 1 || c[0].URIs[0].String() != "spiffe://meshext-xds/node/default.dp-a" {
			t.Errorf("client certificate identity: %v %v", c, err)
		}
		good := envoytest.Start(t, boot)
		// A certificate of dp-a in a bootstrap edited to ask as dp-b.
		other := bootstrapFile(t, bin, filepath.Join(t.TempDir(), "boot.json"), "--ads-address", ads, "--state-dir", state, "--node", "default.dp-a")
		edited := strings.Replace(other, `"id": "default.dp-a"`, `"id": "default.dp-b"`, 1)
		if edited == other {
			t.Fatalf("no node id to edit in:\n%s", other)
		}
		good.WaitConfig(t, 15*time.Second, "mes-a over mTLS", func(c *envoytest.Config) bool { return c.Clusters[mesACluster] != "" })
		// An Envoy without its initial config never turns LIVE: within 5 s
		// it must not, and its log must show the server's refusal.
		stolen, err := envoyproc.Start(envoyproc.Options{Bootstrap: []byte(edited), WorkDir: t.TempDir(), ReadyTimeout: 5 * time.Second})
		if err == nil {
			c, _ := stolen.ConfigDump("")
			stolen.Stop()
			t.Fatalf("an Envoy with dp-a's certificate asking as dp-b became ready: %s", c)
		}
		if !strings.Contains(err.Error(), `config stream to meshext_xds closed: 7, xDS: spiffe://meshext-xds/node/default.dp-a may only ask for node "default.dp-a", not "default.dp-b"`) {
			t.Errorf("the refused Envoy's log does not show PermissionDenied for dp-b: %v", err)
		}
	})
}

// Plain TCP without --ads-insecure is refused at start, saying what to do.
func TestRunRefusesPlainTCPADS(t *testing.T) {
	var stderr bytes.Buffer
	code := runMain([]string{"--dir", t.TempDir(), "--xds", "ads", "--ads-listen", "127.0.0.1:0", "--status-listen", ""}, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "--ads-insecure") || !strings.Contains(stderr.String(), "--state-dir") {
		t.Errorf("exit %d, stderr %q: want 2 and an error naming --state-dir and --ads-insecure", code, stderr.String())
	}
}

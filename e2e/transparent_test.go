package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshext/meshext/bpf/bpftest"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/upstream"
)

// TestTransparentSeedCommands runs the seed's own commands, unchanged, in a
// child process placed in a workload cgroup with the eBPF redirect attached
// (`meshext redirect attach`): the app resolves <name>.svc.meshext.local
// through the embedded DNS (its UDP/53 is redirected, /etc/resolv.conf and
// /etc/hosts untouched), connects to the VIP, and lands in Envoy's
// transparent listener, which reads the original destination.
func TestTransparentSeedCommands(t *testing.T) {
	mount := bpftest.Require(t)
	_, caFile, hostsFile := standIns(t)
	testenv.Tool(t, "nc")
	curl := testenv.Tool(t, "curl")
	grpcurl := testenv.Tool(t, "grpcurl")

	app := bpftest.NewCgroup(t, mount, "app")
	proxy := bpftest.NewCgroup(t, mount, "proxy")
	m := startMesh(t, seedDropDir(t), meshOpts{nodeID: "default.e2e", hostsFile: hostsFile, systemCA: caFile,
		envoyCgroup: proxy, cgroupMount: mount, redirectBPFFS: bpftest.BPFFS()})
	m.waitListener(t, "127.0.0.1:15101") // the e2e Dataplane's transparentProxying.redirectPortOutbound

	// Attach with the defaults (VIPs to 127.0.0.1:15001, DNS to
	// 127.0.0.1:15053): `meshext run` finds the attachment named like the
	// Dataplane and points it at that Dataplane's transparent port (15101) and
	// at its embedded DNS server.
	bin := meshext(t)
	name := "e2e"
	out, err := run(t, 30*time.Second, "", bin, "redirect", "attach", "--dataplane", name,
		"--cgroup", app, "--proxy-cgroup", proxy, "--bpffs", bpftest.BPFFS())
	require.NoError(t, err, out)
	eventually(t, 20*time.Second, "meshext run updates the attachment", func() error {
		out, err := run(t, 10*time.Second, "", bin, "redirect", "status", "--dataplane", name, "--bpffs", bpftest.BPFFS())
		if err != nil {
			return err
		}
		if !strings.Contains(out, "127.0.0.1:15101") || !strings.Contains(out, m.dnsAddr) {
			return fmt.Errorf("status: %s", out)
		}
		return nil
	})
	t.Cleanup(func() {
		if out, err := run(t, 30*time.Second, "", bin, "redirect", "detach", "--dataplane", name, "--bpffs", bpftest.BPFFS()); err != nil {
			t.Errorf("detach: %v\n%s", err, out)
		}
	})

	// inApp runs a shell command line in the workload cgroup.
	inApp := func(t *testing.T, line string) string {
		t.Helper()
		cmd := exec.Command("sh", "-c", line)
		cmd.Env = append(cmd.Environ(), "PATH="+filepath.Dir(grpcurl)+":/usr/sbin:/usr/bin:/sbin:/bin")
		bpftest.CommandIn(t, cmd, app)
		done := make(chan struct{})
		timer := time.AfterFunc(30*time.Second, func() {
			if cmd.Process != nil {
				_ = cmd.Process.Kill()
			}
			close(done)
		})
		b, err := cmd.CombinedOutput()
		if !timer.Stop() {
			<-done
			t.Fatalf("%q did not finish within 30s:\n%s", line, b)
		}
		require.NoError(t, err, "%s\n%s", line, b)
		return string(b)
	}

	runSeedCommands(t, inApp)
	t.Run("outside the cgroup nothing is redirected", func(t *testing.T) {
		// In this namespace there is no route to 242/8: an un-redirected
		// connect fails at once, and curl says so with exit code 7 (could
		// not connect). A missing curl, a timeout (28) or any answer is
		// something else and fails here.
		vips := vipsOf(t, m.status(t))
		out, err := run(t, 10*time.Second, "", curl, "-sS", "--max-time", "3", "http://"+vips["mes-http"]+":80/")
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, out)
		assert.Equal(t, 7, exit.ExitCode(), "curl exit code; output: %s", out)
	})
	t.Run("the transparent listener saw the VIP as original destination", func(t *testing.T) {
		vips := vipsOf(t, m.status(t))
		eventually(t, 30*time.Second, "access log with the VIP", func() error {
			lines := grepLines(m.envoyLog(), "-> "+vips["mes-tcp"]+":"+strconv.Itoa(4242))
			if lines == "" {
				return assert.AnError
			}
			return nil
		})
	})
}

// runSeedCommands runs the seed's seven commands, byte for byte, as
// parallel subtests of "seed commands" (each nc waits 3 s after its input
// ends), through inApp, which runs a shell command line as the workload and
// fails the test unless it exits 0; it checks what each printed.
func runSeedCommands(t *testing.T, inApp func(t *testing.T, line string) string) {
	t.Helper()
	type check func(t *testing.T, out string)
	echoed := func(t *testing.T, out string) { assert.Equal(t, "echo this\n", out) }
	httpbin := func(t *testing.T, out string) { assert.Contains(t, out, "<title>httpbin.org</title>") }
	grpcbin := func(t *testing.T, out string) {
		assert.Contains(t, out, "grpc.health.v1.Health")
		assert.Contains(t, out, upstream.GRPCBinService)
	}
	t.Run("seed commands", func(t *testing.T) {
		for _, tc := range []struct {
			name, line string
			check      check
		}{
			{"mes-tcp", "echo 'echo this' | nc -q 3 mes-tcp.svc.meshext.local 4242", echoed},
			{"mes-tcp-tls", "echo 'echo this' | nc -q 3 mes-tcp-tls.svc.meshext.local 4243", echoed},
			{"mes-tcp-mtls", "echo 'echo this' | nc -q 3 mes-tcp-mtls.svc.meshext.local 4244", echoed},
			{"mes-http", "curl -s http://mes-http.svc.meshext.local", httpbin},
			{"mes-https", "curl http://mes-https.svc.meshext.local", httpbin},
			{"mes-grpc", "grpcurl -plaintext -v mes-grpc.svc.meshext.local:9000 list", grpcbin},
			{"mes-grpcs", "grpcurl -plaintext -v mes-grpcs.svc.meshext.local:9001 list", grpcbin},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.check(t, inApp(t, tc.line))
			})
		}
	})
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testpki"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// TestMain removes the binary built by buildStandins.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildStandins builds the command once per test binary run.
func buildStandins(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "standins-test-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "standins")
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goBin, "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

type proc struct {
	cmd    *exec.Cmd
	ready  map[string]string
	stderr *bytes.Buffer
}

// startStandins runs the command on ephemeral ports and waits (bounded) for its ready line.
func startStandins(t *testing.T, bin string, extra ...string) *proc {
	t.Helper()
	args := []string{"-echo-port", "0", "-echo-tls-port", "0", "-echo-mtls-port", "0", "-http-port", "0",
		"-https-port", "0", "-grpc-port", "0", "-grpcs-port", "0"}
	cmd := exec.Command(bin, append(args, extra...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stderr: new(bytes.Buffer)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		if !ok || !strings.HasPrefix(l, "ready ") {
			t.Fatalf("no ready line (got %q); stderr:\n%s", l, p.stderr)
		}
		p.ready = map[string]string{}
		for _, kv := range strings.Fields(l)[1:] {
			k, v, _ := strings.Cut(kv, "=")
			p.ready[k] = v
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no ready line within 20s; stderr:\n%s", p.stderr)
	}
	return p
}

// stop sends sig and expects a clean exit within 10 s.
func (p *proc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after %s: %v; stderr:\n%s", sig, err, p.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after %s", sig)
	}
	if !strings.Contains(p.stderr.String(), "stand-ins stopped") {
		t.Fatalf("no clean-stop log line; stderr:\n%s", p.stderr)
	}
}

// run executes a client tool with a bounded timeout and returns stdout.
func tool(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\nstderr: %s", filepath.Base(name), args, err, stderr.String())
	}
	return string(out)
}

func TestCommandWithRealClients(t *testing.T) {
	bin := buildStandins(t)
	dir := t.TempDir()
	caPath, hostsPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "standins.hosts")
	p := startStandins(t, bin, "-ca-out", caPath, "-hosts-out", hostsPath, "-ca-key-out", filepath.Join(dir, "ca.key"))

	if p.ready["tcpbin.com"] != "127.0.0.11" || p.ready["httpbin.org"] != "127.0.0.12" || p.ready["grpcbin.test.k6.io"] != "127.0.0.13" || p.ready["ca"] != caPath {
		t.Fatalf("ready fields %v", p.ready)
	}
	hosts, err := os.ReadFile(hostsPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"127.0.0.11 tcpbin.com\n", "127.0.0.12 httpbin.org\n", "127.0.0.13 grpcbin.test.k6.io\n"} {
		if !strings.Contains(string(hosts), want) {
			t.Fatalf("hosts file lacks %q:\n%s", want, hosts)
		}
	}
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	if ca, err := testpki.ParseCertPEM(caPEM); err != nil || !ca.IsCA {
		t.Fatalf("CA file: %v", err)
	}
	if st, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key file: %v mode %v", err, st.Mode().Perm())
	}

	t.Run("nc", func(t *testing.T) {
		nc := testenv.Tool(t, "nc")
		if got := tool(t, "echo this\n", nc, "-q", "3", "127.0.0.11", p.ready["echo"]); got != "echo this\n" {
			t.Fatalf("nc echo: %q", got)
		}
	})
	t.Run("curl", func(t *testing.T) {
		curl := testenv.Tool(t, "curl")
		for _, c := range []struct{ scheme, port string }{{"http", p.ready["http"]}, {"https", p.ready["https"]}} {
			url := c.scheme + "://httpbin.org:" + c.port
			resolve := "httpbin.org:" + c.port + ":127.0.0.12"
			var got struct {
				Headers map[string]string `json:"headers"`
				URL     string            `json:"url"`
			}
			out := tool(t, "", curl, "-sS", "--fail", "--max-time", "10", "--cacert", caPath, "--resolve", resolve, url+"/get")
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("curl %s/get: %v\n%s", url, err, out)
			}
			if got.Headers["Host"] != "httpbin.org:"+c.port || !strings.HasPrefix(got.Headers["User-Agent"], "curl/") || got.URL != url+"/get" {
				t.Fatalf("curl %s/get echoed %+v", url, got)
			}
			if html := tool(t, "", curl, "-sS", "--fail", "--max-time", "10", "--cacert", caPath, "--resolve", resolve, url+"/"); !strings.Contains(html, "httpbin.org") {
				t.Fatalf("curl %s/: %q", url, html)
			}
		}
	})
	t.Run("grpcurl", func(t *testing.T) {
		grpcurl := testenv.Tool(t, "grpcurl")
		wantList := "grpc.health.v1.Health\ngrpc.reflection.v1.ServerReflection\ngrpc.reflection.v1alpha.ServerReflection\ngrpcbin.GRPCBin\nhello.HelloService\n"
		if got := tool(t, "", grpcurl, "-plaintext", "-max-time", "10", "127.0.0.13:"+p.ready["grpc"], "list"); got != wantList {
			t.Fatalf("grpcurl -plaintext list:\n%s\nwant:\n%s", got, wantList)
		}
		tlsAddr := "127.0.0.13:" + p.ready["grpcs"]
		if got := tool(t, "", grpcurl, "-cacert", caPath, "-authority", "grpcbin.test.k6.io", "-max-time", "10", tlsAddr, "list"); got != wantList {
			t.Fatalf("grpcurl TLS list:\n%s", got)
		}
		if got := tool(t, "", grpcurl, "-plaintext", "-max-time", "10", "127.0.0.13:"+p.ready["grpc"], "list", "grpcbin.GRPCBin"); !strings.Contains(got, "grpcbin.GRPCBin.DummyUnary") {
			t.Fatalf("grpcurl list grpcbin.GRPCBin: %s", got)
		}
		out := tool(t, "", grpcurl, "-plaintext", "-max-time", "10", "-d", `{"greeting":"meshext"}`, "127.0.0.13:"+p.ready["grpc"], "hello.HelloService/SayHello")
		if !strings.Contains(out, `"reply": "hello meshext"`) {
			t.Fatalf("grpcurl SayHello: %s", out)
		}
	})
	p.stop(t, syscall.SIGTERM)
}

func TestCommandReusesCAAndStopsOnSIGINT(t *testing.T) {
	bin := buildStandins(t)
	dir := t.TempDir()
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.WriteCertPEM(crt); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteKeyPEM(key); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.crt")
	p := startStandins(t, bin, "-ca-cert", crt, "-ca-key", key, "-ca-out", out, "-tcpbin-addr", "127.0.0.21")
	written, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(written, ca.CertPEM) {
		t.Fatalf("-ca-out did not write the given CA (err %v)", err)
	}
	if p.ready["tcpbin.com"] != "127.0.0.21" {
		t.Fatalf("ready %v", p.ready)
	}
	p.stop(t, syscall.SIGINT)
}

func TestCommandFlagErrors(t *testing.T) {
	for name, args := range map[string][]string{
		"bad address":     {"-tcpbin-addr", "tcpbin"},
		"port range":      {"-http-port", "70000"},
		"ca half given":   {"-ca-cert", "/x"},
		"stray argument":  {"extra"},
		"missing ca file": {"-ca-cert", "/nonexistent", "-ca-key", "/nonexistent"},
	} {
		// Every case fails before anything listens; the timeout only guards
		// against a regression that would make run serve forever.
		errc := make(chan error, 1)
		go func() { errc <- run(args) }()
		select {
		case err := <-errc:
			if err == nil {
				t.Errorf("%s: accepted", name)
			} else {
				t.Logf("%s: %v", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: run did not return", name)
		}
	}
}

// Package kubetest runs a throw-away Kubernetes control plane for tests: an
// embedded etcd and a real kube-apiserver on loopback, with test-generated
// TLS, token authentication (one admin token) and RBAC, plus kubectl at the
// same version. No kubelet, no Docker: the binaries come from `make
// k8s-tools` (.tools/k8s, or $K8S_TOOLS_DIR), never from PATH.
package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
	"github.com/meshext/meshext/e2e/testpki"
)

// Binaries are the programs `make k8s-tools` builds.
var Binaries = []string{"etcd", "kube-apiserver", "kubectl"}

// Timeouts. The API server needs about 20 s to report ready on two busy
// cores; the bounds leave room for a loaded CI machine.
const (
	etcdReadyTimeout  = time.Minute
	apiReadyTimeout   = 3 * time.Minute
	stopTimeout       = 20 * time.Second
	KubectlTimeout    = time.Minute
	readyPollInterval = 250 * time.Millisecond
)

// ToolsDir is where the binaries are looked up: $K8S_TOOLS_DIR, else the
// repository's .tools/k8s.
func ToolsDir() string {
	if d := os.Getenv("K8S_TOOLS_DIR"); d != "" {
		return d
	}
	return filepath.Join(testenv.RepoRoot(), ".tools", "k8s")
}

// RequireTools fails (CI) or skips (elsewhere) the test unless every binary
// is present and executable; it returns ToolsDir().
func RequireTools(t testing.TB) string {
	t.Helper()
	dir := ToolsDir()
	var missing []string
	for _, b := range Binaries {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	testenv.Require(t, len(missing) == 0,
		fmt.Sprintf("%s in %s (run `make k8s-tools`)", strings.Join(missing, ", "), dir))
	return dir
}

// Cluster is a running etcd + kube-apiserver pair.
type Cluster struct {
	// Server is the API server's URL, https://127.0.0.1:PORT.
	Server string
	// Kubeconfig is a kubeconfig file (0600) for the admin user.
	Kubeconfig string
	// Token is the admin user's bearer token (group system:masters).
	Token string
	// CAPEM is the certificate authority that signed the serving certificate.
	CAPEM []byte
	// Dir holds certificates, etcd's data, logs and kubectl's home.
	Dir string

	kubectl   string
	etcd      *process
	apiserver *process
}

// Start starts a cluster and stops it at the end of the test; a failure to
// start fails the test, and a failed test gets the end of both logs. Without
// the binaries it fails under CI=true and skips elsewhere.
func Start(t testing.TB) *Cluster {
	t.Helper()
	tools := RequireTools(t)
	c, err := start(t, tools, t.TempDir())
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("kube-apiserver log (tail):\n%s", c.apiserver.tail(8000))
				t.Logf("etcd log (tail):\n%s", c.etcd.tail(4000))
			}
			c.Stop()
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func start(t testing.TB, tools, dir string) (*Cluster, error) {
	c := &Cluster{Dir: dir, kubectl: filepath.Join(tools, "kubectl")}
	pki := filepath.Join(dir, "pki")
	token, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	c.Token = token
	files, err := writePKI(pki, token)
	if err != nil {
		return nil, err
	}
	c.CAPEM = files.caPEM

	c.etcd, err = startProcess(filepath.Join(tools, "etcd"), filepath.Join(dir, "etcd.log"),
		"-data-dir", filepath.Join(dir, "etcd"), "-listen-client", "127.0.0.1:0",
		"-listen-peer", "127.0.0.1:0", "-unsafe-no-fsync", "-ready-timeout", etcdReadyTimeout.String())
	if err != nil {
		return nil, err
	}
	etcdURL, err := c.etcd.waitLine("etcd ready: client-url=", etcdReadyTimeout)
	if err != nil {
		return c, fmt.Errorf("etcd: %w (its log follows)", err)
	}

	port := testnet.FreePort(t)
	c.Server = "https://127.0.0.1:" + strconv.Itoa(port)
	c.apiserver, err = startProcess(filepath.Join(tools, "kube-apiserver"), filepath.Join(dir, "kube-apiserver.log"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(dir, "apiserver"),
		"--tls-cert-file="+files.servingCert,
		"--tls-private-key-file="+files.servingKey,
		"--token-auth-file="+files.tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+files.saPub,
		"--service-account-signing-key-file="+files.saKey,
		// Only allocated, never routed: no kubelet or proxy exists here.
		"--service-cluster-ip-range=10.96.0.0/24",
		// With the reconciler on, a loopback advertise address (the only
		// one here) is refused at start: the "kubernetes" Service's
		// endpoints may not name it.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	)
	if err != nil {
		return c, err
	}
	if err := c.waitReady(apiReadyTimeout); err != nil {
		return c, fmt.Errorf("kube-apiserver: %w (its log follows)", err)
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig(c.Server, c.CAPEM, c.Token), 0o600); err != nil {
		return c, err
	}
	return c, os.MkdirAll(filepath.Join(dir, "home"), 0o700)
}

// ServiceAccountKubeconfig writes a kubeconfig (0600) that authenticates
// as service account namespace/name with a token from the TokenRequest API
// (valid for an hour), so a test can run a program with exactly the
// permissions RBAC grants that account.
func (c *Cluster) ServiceAccountKubeconfig(t testing.TB, namespace, name string) string {
	t.Helper()
	token := strings.TrimSpace(c.MustKubectl(t, "create", "token", name, "-n", namespace, "--duration=1h"))
	path := filepath.Join(c.Dir, "kubeconfig-"+namespace+"-"+name)
	if err := os.WriteFile(path, kubeconfig(c.Server, c.CAPEM, token), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// HTTPClient trusts the cluster's CA and nothing else; requests carry no
// credentials unless the caller adds them (see Get).
func (c *Cluster) HTTPClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAPEM)
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
}

// Get requests path from the API server with token as the bearer token (none
// when empty) and returns the status code and body.
func (c *Cluster) Get(path, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, c.Server+path, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// waitReady polls /readyz (every post-start hook done, RBAC roles included)
// until it answers "ok", the API server exits, or timeout passes.
func (c *Cluster) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for time.Now().Before(deadline) {
		select {
		case <-c.apiserver.exited:
			return fmt.Errorf("exited at start (%v)", c.apiserver.waitErr)
		case <-time.After(readyPollInterval):
		}
		code, body, err := c.Get("/readyz", c.Token)
		switch {
		case err != nil:
			last = err.Error()
		case code == http.StatusOK && strings.TrimSpace(body) == "ok":
			return nil
		default:
			last = fmt.Sprintf("HTTP %d %.300s", code, body)
		}
	}
	return fmt.Errorf("not ready within %v (last /readyz: %s)", timeout, last)
}

// KubectlCmd is kubectl against this cluster with its own HOME (no user
// kubeconfig, cache or kuberc leaks in), for callers that need stdin or
// streaming; ctx bounds it.
func (c *Cluster) KubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(c.Dir, "home"), "KUBECONFIG=" + c.Kubeconfig}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Kubectl runs kubectl (bounded by KubectlTimeout) and returns its stdout;
// a failure's error carries stderr.
func (c *Cluster) Kubectl(args ...string) (string, error) {
	return c.KubectlStdin("", args...)
}

// KubectlStdin is Kubectl with stdin, e.g. for `apply -f -`.
func (c *Cluster) KubectlStdin(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), KubectlTimeout)
	defer cancel()
	cmd := c.KubectlCmd(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// MustKubectl is Kubectl that fails the test on error.
func (c *Cluster) MustKubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.Kubectl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Pids are the running processes' ids (etcd, kube-apiserver), for checks
// that nothing outlives Stop.
func (c *Cluster) Pids() []int {
	var pids []int
	for _, p := range []*process{c.etcd, c.apiserver} {
		if p != nil {
			pids = append(pids, p.cmd.Process.Pid)
		}
	}
	return pids
}

// Stop stops the API server, then etcd: SIGTERM, and SIGKILL after
// stopTimeout each. Safe to call more than once.
func (c *Cluster) Stop() {
	c.apiserver.stop()
	c.etcd.stop()
}

// process is a child with its output in a log file.
type process struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
	lines   chan string // stdout lines, for waitLine
}

func startProcess(bin, logPath string, args ...string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	// The children die with the test binary even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	p := &process{cmd: cmd, logPath: logPath, exited: make(chan struct{}), lines: make(chan string, 16)}
	go func() {
		// stdout goes to the log too; its lines are offered to waitLine
		// without ever blocking the child.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// waitLine returns the rest of the first stdout line starting with prefix.
func (p *process) waitLine(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l := <-p.lines:
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return strings.TrimSpace(rest), nil
			}
		case <-p.exited:
			return "", fmt.Errorf("exited at start (%v)", p.waitErr)
		case <-deadline:
			return "", fmt.Errorf("no %q line within %v", prefix, timeout)
		}
	}
}

// waitExit reports whether the process has exited within timeout (0: now).
func (p *process) waitExit(timeout time.Duration) bool {
	if timeout <= 0 {
		select {
		case <-p.exited:
			return true
		default:
			return false
		}
	}
	select {
	case <-p.exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (p *process) stop() {
	if p == nil || p.waitExit(0) {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if !p.waitExit(stopTimeout) {
		_ = p.cmd.Process.Kill()
		p.waitExit(10 * time.Second)
	}
}

func (p *process) tail(n int) string {
	if p == nil {
		return "(not started)"
	}
	return envoyproc.Tail(p.logPath, n)
}

type pkiFiles struct {
	caPEM                                         []byte
	servingCert, servingKey, saKey, saPub, tokens string
}

// writePKI writes a CA and the API server's serving certificate (for
// 127.0.0.1 and localhost), the service-account signing key and the token
// file naming the one admin user. Keys and tokens are 0600.
func writePKI(dir, token string) (pkiFiles, error) {
	f := pkiFiles{
		servingCert: filepath.Join(dir, "apiserver.crt"),
		servingKey:  filepath.Join(dir, "apiserver.key"),
		saKey:       filepath.Join(dir, "sa.key"),
		saPub:       filepath.Join(dir, "sa.pub"),
		tokens:      filepath.Join(dir, "tokens.csv"),
	}
	ca, err := testpki.NewCA(testpki.CommonName("meshext kubetest CA"))
	if err != nil {
		return f, err
	}
	f.caPEM = ca.CertPEM
	leaf, err := ca.Issue(testpki.CommonName("kube-apiserver"), testpki.DNSNames("localhost"),
		testpki.IPs("127.0.0.1"), testpki.ServerAuth())
	if err != nil {
		return f, err
	}
	if err := leaf.WriteFiles(f.servingCert, f.servingKey); err != nil {
		return f, err
	}
	// Any private key signs service-account tokens; a throw-away leaf's will do.
	saLeaf, err := ca.Issue(testpki.CommonName("service-account-signer"))
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.saKey, saLeaf.KeyPEM, 0o600); err != nil {
		return f, err
	}
	pub, err := x509.MarshalPKIXPublicKey(saLeaf.Key.Public())
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return f, err
	}
	// token,user,uid,"groups": system:masters is bound to cluster-admin.
	line := token + ",meshext-admin,meshext-admin,\"system:masters\"\n"
	return f, os.WriteFile(f.tokens, []byte(line), 0o600)
}

func kubeconfig(server string, caPEM []byte, token string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: kubetest
  context:
    cluster: kubetest
    user: admin
current-context: kubetest
`, server, base64.StdEncoding.EncodeToString(caPEM), token)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", errors.New("kubetest: no randomness for the admin token")
	}
	return hex.EncodeToString(b), nil
}

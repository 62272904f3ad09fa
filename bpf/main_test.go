package bpf

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshext/meshext/bpf/bpftest"
	"github.com/meshext/meshext/e2e/testenv"
)

// The privileged tests run in a re-executed copy of the test binary inside
// fresh network and mount namespaces (bpftest): the netns has only
// loopback, so nothing can leave the machine, and pins go to a private bpffs.
const helperEnv = "MESHEXT_BPF_TEST_HELPER"

var testBPFFS string // private bpffs mount for pins, set by requireBPF

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper(os.Getenv(helperEnv)))
	}
	code := bpftest.Run(m)
	if benchReport != "" {
		fmt.Print("\n" + benchReport)
	}
	os.Exit(code)
}

// requireBPF fails (CI) or skips the test unless it can load and attach
// BPF programs in the private namespaces; it returns the cgroup v2 mount.
func requireBPF(t testing.TB) string {
	t.Helper()
	mount := bpftest.Require(t)
	testenv.Require(t, CheckKernel() == nil, fmt.Sprintf("kernel: %v", CheckKernel()))
	testBPFFS = bpftest.BPFFS()
	return mount
}

func newCgroup(t testing.TB, mount, role string) string { return bpftest.NewCgroup(t, mount, role) }

func inCgroup(t testing.TB, mount, dir string, fn func()) { bpftest.InCgroup(t, mount, dir, fn) }

// testRedirect is an attached redirect with its cgroups and cleanup.
type testRedirect struct {
	mount, app, proxy string
	name              string
	r                 *Redirect
}

func attachForTest(t testing.TB, mount string, cfg Config) *testRedirect {
	t.Helper()
	tr := &testRedirect{mount: mount, app: newCgroup(t, mount, "app"), proxy: newCgroup(t, mount, "proxy")}
	tr.name = filepath.Base(tr.app)
	r, attached, err := Attach(Spec{Name: tr.name, AppCgroup: tr.app, ProxyCgroup: tr.proxy, Config: cfg, BPFFS: testBPFFS})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if !attached {
		t.Fatalf("fresh attach reported an existing attachment")
	}
	tr.r = r
	t.Cleanup(func() {
		r.Close()
		if err := Detach(testBPFFS, tr.name); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	return tr
}

// listenIn creates a TCP listener on 127.0.0.1:0 inside cgroup dir.
func listenIn(t testing.TB, mount, dir string) *net.TCPListener {
	t.Helper()
	var ln net.Listener
	var err error
	inCgroup(t, mount, dir, func() { ln, err = net.Listen("tcp4", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// runHelper implements subprocess modes used by tests.
func runHelper(mode string) int {
	switch mode {
	case "attach-unprivileged":
		// Runs as an unprivileged uid: Attach must refuse clearly.
		_, _, err := Attach(Spec{Name: "unpriv", AppCgroup: "x", Config: Config{}})
		fmt.Println(err)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

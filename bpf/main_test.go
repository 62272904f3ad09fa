package bpf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/meshext/meshext/e2e/testenv"
	"golang.org/x/sys/unix"
)

// The privileged tests run in a re-executed copy of the test binary inside
// fresh network and mount namespaces: the netns has only loopback, so
// nothing can leave the machine, and bpffs pins go to a private mount.
const (
	netnsEnv  = "MESHEXT_BPF_TEST_NETNS"
	helperEnv = "MESHEXT_BPF_TEST_HELPER"
)

var (
	inNetns   bool   // this process runs in the private namespaces
	testBPFFS string // private bpffs mount for pins
	setupErr  error  // why the private environment could not be made
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper(os.Getenv(helperEnv)))
	}
	if os.Getenv(netnsEnv) == "1" {
		inNetns = true
		setupErr = setupNamespace()
		code := m.Run()
		if benchReport != "" {
			fmt.Print("\n" + benchReport)
		}
		if testBPFFS != "" {
			_ = unix.Unmount(testBPFFS, 0)
			_ = os.Remove(testBPFFS)
		}
		os.Exit(code)
	}
	if CheckPrivileges() == nil {
		cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
		err := cmd.Run()
		var ee *exec.ExitError
		if err == nil {
			os.Exit(0)
		} else if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		setupErr = fmt.Errorf("re-exec into a private network namespace: %w", err)
	} else {
		setupErr = CheckPrivileges()
	}
	os.Exit(m.Run())
}

// setupNamespace brings lo up, makes mounts private and mounts a bpffs.
func setupNamespace() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	dir, err := os.MkdirTemp("", "meshext-bpffs-")
	if err != nil {
		return err
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs: %w", err)
	}
	testBPFFS = dir
	return nil
}

// requireBPF fails (CI) or skips the test unless it can load and attach
// BPF programs in the private namespaces; it returns the cgroup v2 mount.
func requireBPF(t testing.TB) string {
	t.Helper()
	testenv.Require(t, setupErr == nil, fmt.Sprintf("private netns for BPF tests: %v", setupErr))
	testenv.Require(t, inNetns, "private network namespace (root or CAP_BPF+CAP_NET_ADMIN+CAP_SYS_ADMIN)")
	testenv.Require(t, CheckKernel() == nil, fmt.Sprintf("kernel: %v", CheckKernel()))
	mount, err := Cgroup2Mount()
	testenv.Require(t, err == nil, fmt.Sprintf("cgroup v2 mount: %v", err))
	return mount
}

var cgroupSeq atomic.Int64

// newCgroup makes a fresh child cgroup, removed at cleanup.
func newCgroup(t testing.TB, mount, role string) string {
	t.Helper()
	dir := filepath.Join(mount, fmt.Sprintf("meshext-test-%d-%d-%s", os.Getpid(), cgroupSeq.Add(1), role))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove cgroup %s: %v", dir, err)
		}
	})
	return dir
}

// inCgroup runs fn with this process moved into dir, then moves it back.
// Sockets created by fn belong to dir for their whole life.
func inCgroup(t testing.TB, mount, dir string, fn func()) {
	t.Helper()
	home, err := CurrentCgroup(mount)
	if err != nil {
		t.Fatal(err)
	}
	join := func(d string) {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			t.Fatalf("join cgroup %s: %v", d, err)
		}
	}
	join(dir)
	defer join(home)
	fn()
}

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

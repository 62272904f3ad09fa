// Package bpftest runs tests that attach cgroup eBPF programs safely: as root
// the test binary re-executes itself in fresh network and mount namespaces
// (only loopback, a private bpffs), and tests get fresh child cgroups to
// attach to and hop into. Without root the tests skip, or fail under
// CI=true (testenv.Require).
//
//	func TestMain(m *testing.M) { os.Exit(bpftest.Run(m)) }
//
//	func TestX(t *testing.T) {
//		mount := bpftest.Require(t)
//		app := bpftest.NewCgroup(t, mount, "app")
//		bpftest.InCgroup(t, mount, app, func() { /* sockets made here belong to app */ })
//	}
//
// Tests that hop cgroups move the whole test process: do not run them with
// t.Parallel.
package bpftest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
	"golang.org/x/sys/unix"
)

const netnsEnv = "MESHEXT_BPFTEST_NETNS"

var (
	inNamespace bool
	bpffs       string
	setupErr    = errors.New("bpftest.Run was not called from TestMain")
)

// Run is the body of TestMain. As root it re-executes the test binary in a
// fresh network + mount namespace and returns the child's exit code; in the
// child (and when not root) it runs the tests.
func Run(m *testing.M) int {
	if os.Getenv(netnsEnv) == "1" {
		inNamespace = true
		setupErr = setupNamespace()
		code := m.Run()
		if bpffs != "" {
			_ = unix.Unmount(bpffs, 0)
			_ = os.Remove(bpffs)
		}
		return code
	}
	if os.Geteuid() != 0 {
		setupErr = errors.New("root (uid 0) to create network namespaces and attach cgroup BPF programs")
		return m.Run()
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	setupErr = fmt.Errorf("re-exec into a private network namespace: %w", err)
	return m.Run()
}

// InNamespace reports whether this process is the re-executed child.
func InNamespace() bool { return inNamespace }

// BPFFS is a private BPF filesystem mount for pins (valid after Require).
func BPFFS() string { return bpffs }

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
	bpffs = dir
	return nil
}

// Require fails (CI=true) or skips the test unless it runs in the private
// namespaces with a cgroup v2 mount, which it returns.
func Require(t testing.TB) string {
	t.Helper()
	testenv.Require(t, setupErr == nil, fmt.Sprintf("private netns for BPF tests: %v", setupErr))
	mount, err := cgroup2Mount()
	testenv.Require(t, err == nil, fmt.Sprintf("cgroup v2 mount: %v", err))
	return mount
}

// cgroup2Mount finds the cgroup v2 mount in /proc/self/mountinfo.
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(pre)
		if !ok || !strings.HasPrefix(post, "cgroup2 ") || len(fields) < 5 {
			continue
		}
		var st unix.Statfs_t
		if unix.Statfs(fields[4], &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return fields[4], nil
		}
	}
	return "", errors.New("no cgroup2 filesystem mounted")
}

var (
	seq        atomic.Int64
	staleOnce  sync.Once
	staleGone  []string
	staleErr   error
	cgroupName = regexp.MustCompile(`^meshext-test-([0-9]+)-[0-9]+-`)
)

// NewCgroup makes a fresh child cgroup of the cgroup v2 root, removed at
// cleanup (detach BPF programs first; register that cleanup after this).
// The first call of a test binary also removes the cgroups of killed runs
// (RemoveStaleCgroups).
func NewCgroup(t testing.TB, mount, role string) string {
	t.Helper()
	staleOnce.Do(func() { staleGone, staleErr = RemoveStaleCgroups(mount) })
	if staleErr != nil {
		t.Fatalf("remove cgroups of killed runs: %v", staleErr)
	}
	if len(staleGone) > 0 {
		t.Logf("removed cgroups of killed runs: %s", strings.Join(staleGone, ", "))
	}
	dir := filepath.Join(mount, fmt.Sprintf("meshext-test-%d-%d-%s", os.Getpid(), seq.Add(1), role))
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

// RemoveStaleCgroups removes the cgroups NewCgroup made for test processes
// that no longer exist (a killed run), killing what still runs in them
// first; cgroups of live processes stay. It returns the removed directories.
func RemoveStaleCgroups(mount string) ([]string, error) {
	entries, err := os.ReadDir(mount)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		m := cgroupName.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		if pid, err := strconv.Atoi(m[1]); err != nil || Alive(pid) {
			continue
		}
		dir := filepath.Join(mount, e.Name())
		if err := KillCgroup(dir, 5*time.Second); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// KillCgroup kills every process in cgroup dir and waits, bounded, until
// it is empty.
func KillCgroup(dir string, timeout time.Duration) error {
	procs := filepath.Join(dir, "cgroup.procs")
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(procs)
		if err != nil {
			return err
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still holds processes %s after %s", dir, strings.Fields(string(b)), timeout)
		}
		// cgroup.kill (Linux 5.14+) also gets processes forking meanwhile.
		if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Alive reports whether a process with this pid exists (a zombie counts as gone).
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

// InCgroup runs fn with this process moved into dir, then moves it back.
// Sockets created by fn belong to dir for their whole life.
func InCgroup(t testing.TB, mount, dir string, fn func()) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	home := ""
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			home = filepath.Join(mount, rest)
		}
	}
	if home == "" {
		t.Fatal("no cgroup v2 entry in /proc/self/cgroup")
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

// CommandIn sets cmd to start directly inside cgroup dir (clone3
// CLONE_INTO_CGROUP); the returned file must stay open until cmd started.
func CommandIn(t testing.TB, cmd *exec.Cmd, dir string) *os.File {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(f.Fd())
	return f
}

package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/meshext/meshext/bpf/bpftest"
	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/upstream"
)

// TestMakeRun is the README's "Set-up" as a new user meets it: `make run` in
// a fresh copy of the tree, as root with cgroup v2, the seed's commands typed
// into the shell the script tells the user to open in its demo cgroup, then
// Ctrl-C. Everything must stop, the eBPF redirect must be detached, every
// port must be free again, and the README's screen must be what the script
// printed (modulo paths).
//
// What `make run` touches outside its tree is kept private: this test binary
// runs in its own network and mount namespaces (bpftest.Run), a fresh bpffs
// is mounted on /sys/fs/bpf, and `make run` gets a cgroup namespace rooted
// at a fresh cgroup, so its meshext-demo and meshext-proxy cgroups are not
// the host's.
func TestMakeRun(t *testing.T) {
	mount := bpftest.Require(t)
	for _, tool := range []string{"make", "unshare", "nsenter", "git", "nc", "curl"} {
		testenv.Tool(t, tool)
	}
	testenv.Envoy(t)
	repo := testenv.RepoRoot()
	_, err := os.Stat(filepath.Join(repo, ".tools", "bin", "grpcurl"))
	testenv.Require(t, err == nil, ".tools/bin/grpcurl (make tools); make run would download it")

	tree := copyTree(t, repo)
	require.NoError(t, unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"), "mount a private bpffs")
	t.Cleanup(func() { _ = unix.Unmount("/sys/fs/bpf", unix.MNT_DETACH) })
	home := bpftest.NewCgroup(t, mount, "make-run")

	logPath := filepath.Join(t.TempDir(), "screen")
	screen, err := os.Create(logPath)
	require.NoError(t, err)
	defer screen.Close()
	// The cgroup v2 mount seen by `make run` is rooted at home (the kernel
	// refuses a second mount of it on the same path: unmount first).
	cmd := exec.Command("unshare", "--cgroup", "--mount", "--propagation", "private",
		"sh", "-c", `umount "$1" && mount -t cgroup2 cgroup2 "$1" && exec make run`, "sh", mount)
	cmd.Dir = tree
	cmd.Env = userEnv()
	cmd.Stdout, cmd.Stderr = screen, screen
	// Ctrl-C signals the terminal's foreground process group: make and all
	// it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	bpftest.CommandIn(t, cmd, home)
	require.NoError(t, cmd.Start())
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		// Whatever a broken script left behind goes too, so its cgroup can
		// be removed (cgroup.kill: Linux 5.14+).
		_ = os.WriteFile(filepath.Join(home, "cgroup.kill"), []byte("1"), 0)
		for i := 0; i < 50; i++ {
			if b, _ := os.ReadFile(filepath.Join(home, "cgroup.events")); strings.Contains(string(b), "populated 0") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, d := range []string{"meshext-demo", "meshext-proxy"} {
			_ = os.Remove(filepath.Join(home, d))
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- make run screen ---\n%s", b)
			for _, f := range []string{"meshext.log", "envoy.log", "standins.log", "redirect.log"} {
				t.Logf("--- .run/%s (tail) ---\n%s", f, envoyproc.Tail(filepath.Join(tree, ".run", f), 3000))
			}
		}
	})
	readScreen := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}

	// Bounded: building meshext, the plugin and the stand-ins, then startup.
	deadline := time.Now().Add(5 * time.Minute)
	for !strings.Contains(readScreen(), "Press Ctrl-C to stop.") {
		select {
		case <-exited:
			t.Fatalf("make run exited before it was ready: %v", waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("make run not ready within 5 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	ready := readScreen()

	// The shell the script tells the user to open, and the seed's commands.
	opener, commands := demoInstructions(t, ready)
	for _, c := range commands {
		t.Run(regexp.MustCompile(`mes-[a-z-]+`).FindString(c), func(t *testing.T) {
			out := typeInto(t, cmd.Process.Pid, opener, c)
			switch {
			case strings.Contains(c, "nc -q 3"):
				assert.Equal(t, "echo this\n", out)
			case strings.Contains(c, "grpcurl"):
				assert.Contains(t, out, "grpc.health.v1.Health")
				assert.Contains(t, out, upstream.GRPCBinService)
			default:
				assert.Contains(t, out, "<title>httpbin.org</title>")
			}
		})
	}
	listening := listeningSockets(t)
	for _, want := range []string{"tcp 127.0.0.1:9901", "tcp 127.0.0.1:9902", "udp 127.0.0.1:15053", "tcp 127.0.0.1:15080",
		"tcp 127.0.0.1:8080", "tcp 127.0.0.12:80", "tcp 127.0.0.12:443", "tcp 127.0.0.11:4242", "tcp 127.0.0.13:9001"} {
		require.Contains(t, listening, want, "make run serves %s", want)
	}
	pins, err := filepath.Glob("/sys/fs/bpf/meshext/*")
	require.NoError(t, err)
	require.NotEmpty(t, pins, "the redirect's pins while running")

	// Ctrl-C.
	require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGINT))
	select {
	case <-exited:
		t.Logf("make run after Ctrl-C: %v", waitErr)
	case <-time.After(60 * time.Second):
		t.Fatal("make run still running 60 s after Ctrl-C")
	}
	t.Run("everything stopped", func(t *testing.T) {
		// cgroup.events says whether any process is left anywhere in the
		// run's cgroup tree: the stand-ins, meshext, Envoy, anything they
		// started.
		eventually(t, 10*time.Second, "no process left in make run's cgroups", func() error {
			b, err := os.ReadFile(filepath.Join(home, "cgroup.events"))
			if err != nil {
				return err
			}
			if !strings.Contains(string(b), "populated 0") {
				procs, _ := os.ReadFile(filepath.Join(home, "cgroup.procs"))
				return fmt.Errorf("cgroup.events: %q; left: %q", b, procs)
			}
			return nil
		})
		for _, d := range []string{"meshext-demo", "meshext-proxy"} {
			_, err := os.Stat(filepath.Join(home, d))
			assert.True(t, errors.Is(err, os.ErrNotExist), "cgroup %s removed: %v", d, err)
		}
	})
	t.Run("the redirect was detached", func(t *testing.T) {
		pins, err := filepath.Glob("/sys/fs/bpf/meshext/*")
		require.NoError(t, err)
		assert.Empty(t, pins)
		out, err := run(t, 20*time.Second, "", filepath.Join(tree, "bin", "meshext"), "redirect", "status", "--bpffs", "/sys/fs/bpf")
		require.NoError(t, err, out)
		assert.Equal(t, "no redirects attached\n", out)
	})
	t.Run("ports are free", func(t *testing.T) {
		for _, s := range listening {
			network, addr, _ := strings.Cut(s, " ")
			var err error
			if network == "udp" {
				var c net.PacketConn
				if c, err = net.ListenPacket("udp", addr); err == nil {
					c.Close()
				}
			} else {
				var l net.Listener
				if l, err = net.Listen("tcp", addr); err == nil {
					l.Close()
				}
			}
			assert.NoError(t, err, "%s still taken", s)
		}
		assert.Empty(t, listeningSockets(t), "sockets left listening")
	})
	t.Run("the README's screen is what make run printed", func(t *testing.T) {
		readmeScreenMatches(t, readScreen(), tree)
	})
}

// copyTree copies the checkout's files (tracked and untracked, not ignored)
// into a fresh directory, as a fresh clone would have them; .tools (Envoy,
// grpcurl) is linked, since installing it needs the network.
func copyTree(t *testing.T, repo string) string {
	t.Helper()
	out, err := run(t, time.Minute, "", "git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	require.NoError(t, err, out)
	tree := filepath.Join(t.TempDir(), "meshext")
	for _, rel := range strings.Split(strings.TrimRight(out, "\x00"), "\x00") {
		src := filepath.Join(repo, rel)
		st, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the work tree
		}
		require.NoError(t, err)
		if !st.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(src)
		require.NoError(t, err)
		dst := filepath.Join(tree, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		require.NoError(t, os.WriteFile(dst, b, st.Mode().Perm()))
	}
	require.NoError(t, os.Symlink(filepath.Join(repo, ".tools"), filepath.Join(tree, ".tools")))
	return tree
}

// userEnv is this environment without what an outer make (make test) adds,
// so `make run` behaves as typed at a prompt.
func userEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// demoInstructions reads the script's instructions: the command that opens
// a shell in the demo cgroup, and the seed's commands to type into it.
func demoInstructions(t *testing.T, screen string) (opener string, commands []string) {
	t.Helper()
	_, after, ok := strings.Cut(screen, "run the seed's commands unchanged:\n")
	require.True(t, ok, "make run did not attach the eBPF redirect (as root with cgroup v2 it must):\n%s", screen)
	for _, line := range strings.Split(after, "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		line = strings.TrimSpace(line)
		if opener == "" {
			opener = strings.TrimPrefix(line, "sudo ") // the test runs as root
			continue
		}
		commands = append(commands, line)
	}
	require.Contains(t, opener, "meshext-demo/cgroup.procs")
	require.Len(t, commands, 7, "the seed's seven commands")
	return opener, commands
}

// typeInto runs opener (a shell in the demo cgroup) in make run's mount
// namespace, where its cgroup path is valid, and types command into it.
func typeInto(t *testing.T, pid int, opener, command string) string {
	t.Helper()
	out, err := run(t, 30*time.Second, command+"\n", "nsenter", "--target", strconv.Itoa(pid), "--mount", "--", "sh", "-c", opener)
	require.NoError(t, err, "%s\n%s", command, out)
	return out
}

// listeningSockets lists the TCP listeners and bound UDP sockets of this
// network namespace (only make run's while it runs), as "tcp IP:PORT".
func listeningSockets(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, f := range []struct{ path, network, state string }{
		{"/proc/net/tcp", "tcp", "0A"}, {"/proc/net/tcp6", "tcp", "0A"}, {"/proc/net/udp", "udp", "07"}, {"/proc/net/udp6", "udp", "07"},
	} {
		b, err := os.ReadFile(f.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != f.state {
				continue
			}
			out = append(out, f.network+" "+procNetAddr(t, fields[1]))
		}
	}
	return out
}

// procNetAddr decodes /proc/net's HEXIP:HEXPORT (IP in host byte order words).
func procNetAddr(t *testing.T, s string) string {
	t.Helper()
	h, p, _ := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	require.NoError(t, err)
	raw := make([]byte, len(h)/2)
	for i := range raw {
		v, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		require.NoError(t, err)
		raw[i] = byte(v)
	}
	for i := 0; i+4 <= len(raw); i += 4 { // each 32-bit word is little-endian
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	return net.JoinHostPort(net.IP(raw).String(), strconv.FormatUint(port, 10))
}

// readmeScreenMatches compares the README's "A real screen" block, after its
// "..." (the build output), with what make run printed from that line on.
// Paths differ by machine (the checkout, the cgroup v2 mount), the Makefile's
// line numbers by version, and the README shows the ^C a terminal echoes
// where the script printed an empty line.
func readmeScreenMatches(t *testing.T, screen, tree string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "README.md"))
	require.NoError(t, err)
	_, block, ok := strings.Cut(string(b), "A real screen:\n\n```\n$ sudo make run\n...\n")
	require.True(t, ok, "README.md has no screen of `sudo make run` after \"A real screen:\"")
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	readmeRoot := regexp.MustCompile(`/work/main\b`)
	cgroupPath := regexp.MustCompile(`/sys/fs/cgroup(/unified)?/meshext-`)
	makefileLine := regexp.MustCompile(`\[Makefile:[0-9]+:`)
	norm := func(s string, root *regexp.Regexp) []string {
		s = root.ReplaceAllString(s, "<checkout>")
		s = cgroupPath.ReplaceAllString(s, "<cgroup2>/meshext-")
		s = makefileLine.ReplaceAllString(s, "[Makefile:N:")
		return strings.Split(strings.TrimRight(s, "\n"), "\n")
	}
	want := norm(block, readmeRoot)
	for i, l := range want {
		if l == "^C" {
			want[i] = ""
		}
	}
	got := norm(screen, regexp.MustCompile(regexp.QuoteMeta(tree)))
	start := -1
	for i, l := range got {
		if l == want[0] {
			start = i
			break
		}
	}
	require.NotEqual(t, -1, start, "make run never printed the README's first line %q", want[0])
	assert.Equal(t, strings.Join(want, "\n"), strings.Join(got[start:], "\n"), "README.md's screen vs make run's")
}

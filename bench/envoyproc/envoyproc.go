// Package envoyproc runs an Envoy for a benchmark: pinned to one worker,
// admin on an ephemeral port, readiness, stats and CPU time from /proc.
package envoyproc

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Proc is one running Envoy, pinned to one worker thread.
type Proc struct {
	cmd    *exec.Cmd
	Admin  string // host:port of the admin listener
	Log    string // Envoy's stdout+stderr
	exited chan struct{}
}

// Start runs envoy -c config --concurrency 1 and waits (bounded) until
// its admin /ready says LIVE. extraEnv is added to the environment (e.g. the
// dynamic-module search path).
func Start(envoyBin, config, workDir, name string, extraEnv []string) (*Proc, error) {
	// Every Envoy takes several inotify instances; on a host busy with other
	// Envoys the per-user limit (fs.inotify.max_user_instances) runs out and
	// Envoy aborts at start. Wait for others to finish, a few times.
	var err error
	for attempt := 1; attempt <= 8; attempt++ { // about a minute in all
		var e *Proc
		e, err = start(envoyBin, config, workDir, name, extraEnv)
		if err == nil || !strings.Contains(err.Error(), "inotify") {
			return e, err
		}
		fmt.Fprintf(os.Stderr, "envoyproc: %s: no inotify instance left, retry %d/8\n", name, attempt)
		time.Sleep(time.Duration(min(attempt, 4)) * 3 * time.Second)
	}
	return nil, fmt.Errorf("%w (raise fs.inotify.max_user_instances: sysctl -w fs.inotify.max_user_instances=1024)", err)
}

func start(envoyBin, config, workDir, name string, extraEnv []string) (*Proc, error) {
	adminPath := filepath.Join(workDir, name+".admin")
	logPath := filepath.Join(workDir, name+".log")
	_ = os.Remove(adminPath)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(envoyBin, "-c", config, "--concurrency", "1",
		"--disable-hot-restart", "--admin-address-path", adminPath,
		"--log-level", "warn")
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), extraEnv...)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	logf.Close()
	exited := make(chan struct{})
	e := &Proc{cmd: cmd, Log: logPath, exited: exited}
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			log := Tail(logPath, 600)
			if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "inotify_fd_ >= 0") {
				log = "no inotify instance left (fs.inotify.max_user_instances)"
			}
			return nil, fmt.Errorf("envoy %s exited at start: %s", name, log)
		case <-time.After(50 * time.Millisecond):
		}
		if e.Admin == "" {
			b, err := os.ReadFile(adminPath)
			if err != nil || len(strings.TrimSpace(string(b))) == 0 {
				continue
			}
			e.Admin = strings.TrimSpace(string(b))
		}
		if body, err := e.Get("/ready"); err == nil && strings.TrimSpace(body) == "LIVE" {
			return e, nil
		}
	}
	_ = cmd.Process.Kill()
	<-exited
	return nil, fmt.Errorf("envoy %s not LIVE within 20s: %s", name, Tail(logPath, 600))
}

// Get fetches an admin path.
func (e *Proc) Get(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+e.Admin+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), err
}

// Stat returns one stat value from /stats?filter=^name$ ("" when absent).
func (e *Proc) Stat(name string) string {
	body, err := e.Get("/stats?filter=^" + strings.ReplaceAll(name, ".", `\.`) + "$")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && k == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Pid is the Envoy process id.
func (e *Proc) Pid() int { return e.cmd.Process.Pid }

// Stop interrupts Envoy and waits (bounded) for it to exit.
func (e *Proc) Stop() {
	if e == nil {
		return
	}
	_ = e.cmd.Process.Signal(os.Interrupt)
	select {
	case <-e.exited:
	case <-time.After(5 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.exited
	}
}

// CPUTicks reads utime+stime (clock ticks) of a process from /proc/<pid>/stat.
func CPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return ParseStatTicks(string(b))
}

// ParseStatTicks extracts fields 14 (utime) and 15 (stime) from a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after the last ')'.
func ParseStatTicks(line string) (int64, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat line")
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state); utime is field 14 → f[11], stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat line: %d fields", len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc stat times %q %q", f[11], f[12])
	}
	return u + s, nil
}

// ClockTicks is USER_HZ; 100 on every Linux architecture Go supports.
const ClockTicks = 100

// Tail is the end of a log file, for error messages.
func Tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// RSSMB is a process's resident set size in MB (VmRSS), 0 when unknown.
func RSSMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// FreePort is an ephemeral loopback port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// InotifyInstances counts a process's inotify file descriptors (each is one
// instance against fs.inotify.max_user_instances); -1 when unknown.
func InotifyInstances(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if t, err := os.Readlink(dir + "/" + e.Name()); err == nil && t == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// envoyProc is one running Envoy, pinned to one worker thread.
type envoyProc struct {
	cmd    *exec.Cmd
	admin  string // host:port of the admin listener
	log    string
	exited chan struct{}
}

// startEnvoy runs envoy -c config --concurrency 1 and waits (bounded) until
// its admin /ready says LIVE. extraEnv is added to the environment (e.g. the
// dynamic-module search path).
func startEnvoy(envoyBin, config, workDir, name string, extraEnv []string) (*envoyProc, error) {
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
	e := &envoyProc{cmd: cmd, log: logPath, exited: exited}
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return nil, fmt.Errorf("envoy %s exited at start: %s", name, tail(logPath, 600))
		case <-time.After(50 * time.Millisecond):
		}
		if e.admin == "" {
			b, err := os.ReadFile(adminPath)
			if err != nil || len(strings.TrimSpace(string(b))) == 0 {
				continue
			}
			e.admin = strings.TrimSpace(string(b))
		}
		if body, err := e.get("/ready"); err == nil && strings.TrimSpace(body) == "LIVE" {
			return e, nil
		}
	}
	_ = cmd.Process.Kill()
	<-exited
	return nil, fmt.Errorf("envoy %s not LIVE within 20s: %s", name, tail(logPath, 600))
}

func (e *envoyProc) get(path string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+e.admin+path, nil)
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

// stat returns one stat value from /stats?filter=^name$ ("" when absent).
func (e *envoyProc) stat(name string) string {
	body, err := e.get("/stats?filter=^" + strings.ReplaceAll(name, ".", `\.`) + "$")
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

func (e *envoyProc) pid() int { return e.cmd.Process.Pid }

func (e *envoyProc) stop() {
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

// cpuTicks reads utime+stime (clock ticks) of a process from /proc/<pid>/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(string(b))
}

// parseStatTicks extracts fields 14 (utime) and 15 (stime) from a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after the last ')'.
func parseStatTicks(line string) (int64, error) {
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

// clockTicks is USER_HZ; 100 on every Linux architecture Go supports.
const clockTicks = 100

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

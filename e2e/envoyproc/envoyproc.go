// Package envoyproc runs a real Envoy for tests and benchmarks: bootstrap
// in, admin address read back through --admin-address-path, a bounded wait
// until /ready says LIVE, admin reads (/stats, /config_dump, /listeners) and
// a bounded stop. It is the one place that knows how to run Envoy as a child
// process; callers add only what their test is about.
package envoyproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
)

// Options says how to run Envoy. Zero values are the common test defaults.
type Options struct {
	// Bin is the Envoy binary (testenv.EnvoyPath() when empty).
	Bin string
	// Config is a bootstrap file. When empty, Bootstrap is written to
	// WorkDir/<Name>.yaml (Envoy reads JSON as YAML).
	Config    string
	Bootstrap []byte
	// WorkDir holds the admin address file, the log and a written
	// bootstrap; it must exist. StartT uses t.TempDir() when empty.
	WorkDir string
	// Name prefixes the files in WorkDir ("envoy" when empty), so several
	// Envoys can share one directory.
	Name string
	// Concurrency is --concurrency (1 when 0).
	Concurrency int
	// LogLevel is -l ("info" when empty).
	LogLevel string
	// Args are further command-line arguments, e.g.
	// "--file-flush-interval-msec", "100" or "--component-log-level", "...".
	Args []string
	// Env is added to this process's environment, e.g.
	// ENVOY_DYNAMIC_MODULES_SEARCH_PATH=... or GODEBUG=cgocheck=0.
	Env []string
	// Log, when set, also gets Envoy's stdout+stderr (it always goes to
	// WorkDir/<Name>.log too).
	Log io.Writer
	// Cmd, when set, adjusts the command before it starts (cgroup, SysProcAttr).
	Cmd func(*exec.Cmd)
	// Dial, when set, makes the connections to the admin listener, e.g.
	// from inside the network namespace Envoy runs in (e2e/netns).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Ready, when set, must also hold (polled every 50 ms) after /ready says
	// LIVE before Start returns, e.g. "every listener is bound".
	Ready func(*Proc) bool
	// Context, when set, also ends the wait for readiness.
	Context context.Context
	// ReadyTimeout bounds the wait for readiness (30 s when 0).
	ReadyTimeout time.Duration
	// StopTimeout bounds how long Stop waits after SIGINT before SIGKILL
	// (5 s when 0).
	StopTimeout time.Duration
	// InotifyRetries: on a host busy with other Envoys the per-user inotify
	// instance limit runs out and Envoy aborts at start; retry this many
	// times with a growing pause (0 = fail at once).
	InotifyRetries int
}

// Pinned is the setup benchmarks and the e2e mesh use: config as given,
// one worker, warn-level logs to WorkDir/<name>.log, 20 s to get LIVE, and
// inotify retries (they start many Envoys back to back).
func Pinned(bin, config, workDir, name string, env []string) Options {
	return Options{Bin: bin, Config: config, WorkDir: workDir, Name: name, Env: env,
		LogLevel: "warn", ReadyTimeout: 20 * time.Second, InotifyRetries: 8}
}

// Proc is one running Envoy.
type Proc struct {
	// Admin is host:port of the admin listener.
	Admin string
	// LogPath is the file holding Envoy's stdout+stderr.
	LogPath string

	cmd         *exec.Cmd
	exited      chan struct{}
	waitErr     error
	stopTimeout time.Duration
	client      *http.Client // admin requests
}

// Start runs Envoy and waits (bounded) until it is ready; on failure the
// process is gone and the error carries the end of its log.
func Start(o Options) (*Proc, error) {
	for attempt := 1; ; attempt++ {
		p, err := start(o)
		if err == nil || !strings.Contains(err.Error(), "inotify") {
			return p, err
		}
		if attempt > o.InotifyRetries {
			return nil, fmt.Errorf("%w (raise fs.inotify.max_user_instances: sysctl -w fs.inotify.max_user_instances=1024)", err)
		}
		fmt.Fprintf(os.Stderr, "envoyproc: %s: no inotify instance left, retry %d/%d\n", o.Name, attempt, o.InotifyRetries)
		time.Sleep(time.Duration(min(attempt, 4)) * 3 * time.Second)
	}
}

func start(o Options) (*Proc, error) {
	if o.Bin == "" {
		o.Bin = testenv.EnvoyPath()
		if o.Bin == "" {
			return nil, errors.New("no Envoy binary (run `make envoy` or set ENVOY_BIN)")
		}
	}
	if o.WorkDir == "" {
		return nil, errors.New("envoyproc: WorkDir is required")
	}
	if o.Name == "" {
		o.Name = "envoy"
	}
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 5 * time.Second
	}
	config := o.Config
	if config == "" {
		if len(o.Bootstrap) == 0 {
			return nil, errors.New("envoyproc: neither Config nor Bootstrap given")
		}
		config = filepath.Join(o.WorkDir, o.Name+".yaml")
		if err := os.WriteFile(config, o.Bootstrap, 0o600); err != nil {
			return nil, err
		}
	}
	adminPath := filepath.Join(o.WorkDir, o.Name+".admin")
	logPath := filepath.Join(o.WorkDir, o.Name+".log")
	_ = os.Remove(adminPath)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{"-c", config, "--disable-hot-restart",
		"--concurrency", strconv.Itoa(o.Concurrency), "--admin-address-path", adminPath,
		"-l", o.LogLevel}, o.Args...)
	cmd := exec.Command(o.Bin, args...)
	var out io.Writer = logf
	if o.Log != nil {
		out = io.MultiWriter(logf, o.Log)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), o.Env...)
	if o.Cmd != nil {
		o.Cmd(cmd)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start envoy %s: %w", o.Name, err)
	}
	p := &Proc{LogPath: logPath, cmd: cmd, exited: make(chan struct{}), stopTimeout: o.StopTimeout, client: client}
	if o.Dial != nil {
		p.client = &http.Client{Timeout: client.Timeout, Transport: &http.Transport{DialContext: o.Dial, DisableKeepAlives: true}}
	}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	if o.Context == nil {
		o.Context = context.Background()
	}
	deadline := time.Now().Add(o.ReadyTimeout)
	for time.Now().Before(deadline) && o.Context.Err() == nil {
		select {
		case <-p.exited:
			log := p.Tail(2000)
			if strings.Contains(p.LogText(), "inotify_fd_ >= 0") {
				log = "no inotify instance left (fs.inotify.max_user_instances)"
			}
			return nil, fmt.Errorf("envoy %s exited at start (%v): %s", o.Name, p.waitErr, log)
		case <-time.After(50 * time.Millisecond):
		}
		if p.Admin == "" {
			b, err := os.ReadFile(adminPath)
			if err != nil || len(strings.TrimSpace(string(b))) == 0 {
				continue
			}
			p.Admin = strings.TrimSpace(string(b))
		}
		if body, err := p.Get("/ready"); err != nil || strings.TrimSpace(body) != "LIVE" {
			continue
		}
		if o.Ready == nil || o.Ready(p) {
			return p, nil
		}
	}
	p.Kill()
	return nil, fmt.Errorf("envoy %s not ready within %v: %s", o.Name, o.ReadyTimeout, p.Tail(2000))
}

// StartT is Start for a test: WorkDir defaults to t.TempDir(), Bin to
// testenv.Envoy(t) (fail under CI, skip elsewhere); a start failure fails
// the test. Envoy is stopped at cleanup, and the end of its log is printed
// when the test failed.
func StartT(t testing.TB, o Options) *Proc {
	t.Helper()
	if o.Bin == "" {
		o.Bin = testenv.Envoy(t)
	}
	if o.WorkDir == "" {
		o.WorkDir = t.TempDir()
	}
	p, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("envoy log (tail):\n%s", p.Tail(8000))
		}
	})
	return p
}

// Pid is Envoy's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Alive reports whether Envoy is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Exited is closed when Envoy has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Stop interrupts Envoy (it flushes its logs) and waits, bounded, before
// killing it. Safe to call more than once and on nil.
func (p *Proc) Stop() {
	if p == nil || !p.Alive() {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(p.stopTimeout):
		p.Kill()
	}
}

// Kill kills Envoy at once and waits (bounded) for it to be gone.
func (p *Proc) Kill() {
	if p == nil || !p.Alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
	}
}

// LogText is everything Envoy printed so far.
func (p *Proc) LogText() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail is the last n bytes of Envoy's log, for messages.
func (p *Proc) Tail(n int) string { return Tail(p.LogPath, n) }

var client = &http.Client{Timeout: 5 * time.Second}

// Get fetches an admin path (5 s bound); a non-200 answer is an error
// carrying the body.
func (p *Proc) Get(path string) (string, error) {
	return p.GetContext(context.Background(), path)
}

// GetContext is Get bounded also by ctx.
func (p *Proc) GetContext(ctx context.Context, path string) (string, error) {
	if p.Admin == "" {
		return "", errors.New("envoy admin address not known yet")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Admin+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), err
}

// Text is an admin page's body, "" when it cannot be read (for polling
// loops that only look for a substring).
func (p *Proc) Text(path string) string {
	body, err := p.Get(path)
	if err != nil {
		return ""
	}
	return body
}

// Stat is the value of one stat or text readout, quotes removed ("" when
// the stat does not exist yet).
func (p *Proc) Stat(name string) (string, error) {
	return p.StatContext(context.Background(), name)
}

// StatValue is Stat for polling and reports: "" when the stat is absent or
// cannot be read.
func (p *Proc) StatValue(name string) string {
	v, _ := p.Stat(name)
	return v
}

// StatContext is Stat bounded also by ctx.
func (p *Proc) StatContext(ctx context.Context, name string) (string, error) {
	body, err := p.GetContext(ctx, "/stats?filter=^"+strings.ReplaceAll(name, ".", `\.`)+"$")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && k == name {
			return strings.Trim(strings.TrimSpace(v), `"`), nil
		}
	}
	return "", nil
}

// StatInt is a counter or gauge (0 when it does not exist yet).
func (p *Proc) StatInt(ctx context.Context, name string) (int64, error) {
	v, err := p.StatContext(ctx, name)
	if err != nil || v == "" {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// ConfigDump is the raw /config_dump JSON (query, e.g. "?include_eds", appended).
func (p *Proc) ConfigDump(query string) (string, error) {
	return p.Get("/config_dump" + query)
}

// Listeners maps each bound listener's name to its host:port, from
// /listeners?format=json.
func (p *Proc) Listeners(ctx context.Context) (map[string]string, error) {
	body, err := p.GetContext(ctx, "/listeners?format=json")
	if err != nil {
		return nil, err
	}
	var l struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		return nil, fmt.Errorf("/listeners: %w", err)
	}
	m := map[string]string{}
	for _, s := range l.ListenerStatuses {
		if a := s.LocalAddress.SocketAddress; a.PortValue != 0 {
			m[s.Name] = net.JoinHostPort(a.Address, strconv.Itoa(a.PortValue))
		}
	}
	return m, nil
}

// Tail is the end (n bytes) of a log file, for error messages.
func Tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// Validate runs `envoy --mode validate` on a bootstrap file (bounded to
// 60 s) and returns Envoy's output; an error when Envoy refuses the file or
// does not print OK.
func Validate(bin, config string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--mode", "validate", "-c", config, "--disable-hot-restart", "-l", "warning").CombinedOutput()
	if err != nil {
		return string(out), err
	}
	if !strings.Contains(string(out), "OK") {
		return string(out), errors.New("no OK in the output")
	}
	return string(out), nil
}

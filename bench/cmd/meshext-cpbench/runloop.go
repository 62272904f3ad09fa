package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/xds"
	"github.com/meshext/meshext/e2e/envoyproc"
)

// viaRun measures what a user sees: the real `meshext run` (fsnotify,
// debounce, reload) feeding a real Envoy through file drops; each change is
// timed from the resource-file edit to Envoy reporting the new CDS version.
func viaRun(n int, dir, envoyBin, meshext, plugin string, changes int, debounce time.Duration) (*Result, error) {
	resDir := filepath.Join(dir, "resources")
	xdsDir := abs(filepath.Join(dir, "xds"))
	files, err := generate(resDir, n)
	if err != nil {
		return nil, err
	}
	r := &Result{N: n, Files: files}
	status, err := envoyproc.FreePort()
	if err != nil {
		return r, err
	}
	logf, err := os.Create(filepath.Join(dir, "meshext-run.log"))
	if err != nil {
		return r, err
	}
	defer logf.Close()
	t0 := time.Now()
	args := []string{"run", "--dir", resDir, "--xds", "file", "--xds-dir", xdsDir,
		"--status-listen", fmt.Sprintf("127.0.0.1:%d", status), "--debounce", debounce.String(), "--log-level", runLogLevel}
	if dropFormat != xds.FormatJSON {
		args = append(args, "--xds-format", string(dropFormat))
	}
	cmd := exec.Command(meshext, append(args, pluginArgs(meshext, plugin)...)...)
	exited, stop, err := startProcess(cmd, logf)
	if err != nil {
		return r, err
	}
	defer stop()
	cds, lds := dropFormat.CDSPath(xdsDir, render.DefaultNodeID), dropFormat.LDSPath(xdsDir, render.DefaultNodeID)
	// The first drop: bounded wait for meshext run to write the clusters
	// and then the listeners file (renamed just after; Envoy refuses to
	// start on a bootstrap naming a missing file).
	var want string
	err = whileRunning(exited, logf.Name(), 20*time.Millisecond, 120*time.Second, func() bool {
		v, err := fileVersion(cds)
		if err != nil || v == "" {
			return false
		}
		_, err = os.Stat(lds)
		want = v
		return err == nil
	}, fmt.Sprintf("meshext run wrote no %s and %s", cds, lds))
	if err != nil {
		return r, err
	}
	r.TotalMS = ms(time.Since(t0)) // start → first file drop
	admin, err := envoyproc.FreePort()
	if err != nil {
		return r, err
	}
	bootPath := filepath.Join(dir, "bootstrap.json")
	if err := userBootstrap(meshext, xdsDir, admin, bootPath, filepath.Dir(cds)); err != nil {
		return r, err
	}
	t1 := time.Now()
	// At 10k services Envoy is ready only after its first CDS from the
	// drop (about 20 s on a 2-core VM).
	eo := envoyproc.Pinned(envoyBin, bootPath, dir, "run-envoy", pluginEnv(plugin))
	eo.ReadyTimeout = 180 * time.Second
	e, err := envoyproc.Start(eo)
	if err != nil {
		return r, err
	}
	defer e.Stop()
	if _, err := waitVersion(e, want, 120*time.Second); err != nil {
		return r, err
	}
	r.EnvoyInitialMS = ms(time.Since(t1))
	r.EnvoyRSSMB = envoyproc.RSSMB(e.Pid())
	r.EnvoyInotify = envoyproc.InotifyInstances(e.Pid())
	for k := 0; k < changes; k++ {
		i := (k*7919 + 13) % n
		t0 := time.Now()
		if _, err := editOne(resDir, i, 61000+k); err != nil {
			return r, err
		}
		// meshext run rewrites cds.json; wait (bounded) for a new version in
		// the file, then for Envoy to report it.
		var next string
		for deadline := time.Now().Add(60 * time.Second); ; {
			if v, err := fileVersion(cds); err == nil && v != want {
				next = v
				break
			}
			if time.Now().After(deadline) {
				return r, fmt.Errorf("meshext run did not rewrite %s within 60s of an edit", cds)
			}
			time.Sleep(2 * time.Millisecond)
		}
		r.ChangePipeMS = append(r.ChangePipeMS, ms(time.Since(t0)))
		if _, err := waitVersion(e, next, 60*time.Second); err != nil {
			return r, err
		}
		r.ChangeTotalMS = append(r.ChangeTotalMS, ms(time.Since(t0)))
		want = next
	}
	r.EnvoyRejected = rejected(e)
	r.ControllerRSSMB = envoyproc.RSSMB(cmd.Process.Pid)
	return r, nil
}

// userBootstrap writes Envoy's bootstrap the way a user would, with
// `meshext bootstrap --xds file`; trees without that command get the same
// render.Bootstrap call directly.
func userBootstrap(meshext, xdsDir string, admin int, out, nodeDir string) error {
	args := []string{"bootstrap", "--xds", "file", "--xds-dir", xdsDir, "--node", render.DefaultNodeID,
		"--admin-port", fmt.Sprint(admin), "--out", out}
	if dropFormat != xds.FormatJSON {
		args = append(args, "--xds-format", string(dropFormat))
	}
	cmd := exec.Command(meshext, args...)
	if b, err := cmd.CombinedOutput(); err == nil {
		return nil
	} else if !strings.Contains(string(b), "Usage: meshext COMMAND") {
		return fmt.Errorf("meshext bootstrap: %v: %s", err, b)
	}
	b, err := render.Bootstrap(render.BootstrapOptions{XDS: render.XDSFile, XDSDir: nodeDir, AdminPort: uint32(admin), FileFormat: dropFormat})
	if err != nil {
		return err
	}
	bj, err := protojson.Marshal(b)
	if err != nil {
		return err
	}
	return os.WriteFile(out, bj, 0o644)
}

// viaRunADS is viaRun over ADS: `meshext run --xds ads` and an Envoy from
// `meshext bootstrap --xds ads`. There is no file to read the new version
// from, so a change counts as applied when Envoy's CDS version_text moves.
func viaRunADS(n int, dir, envoyBin, meshext, plugin string, changes int, debounce time.Duration, delta bool) (*Result, error) {
	resDir := filepath.Join(dir, "resources")
	files, err := generate(resDir, n)
	if err != nil {
		return nil, err
	}
	r := &Result{N: n, Files: files}
	var ports [2]int
	for i := range ports {
		if ports[i], err = envoyproc.FreePort(); err != nil {
			return r, err
		}
	}
	// ADS on meshext run's owner-only unix socket, its default.
	ads := "unix:" + filepath.Join(dir, "ads", "ads.sock")
	status, admin := fmt.Sprintf("127.0.0.1:%d", ports[0]), ports[1]
	logf, err := os.Create(filepath.Join(dir, "meshext-run.log"))
	if err != nil {
		return r, err
	}
	defer logf.Close()
	bootPath := filepath.Join(dir, "bootstrap.json")
	if err := adsBootstrap(meshext, ads, render.DefaultNodeID, admin, bootPath, delta); err != nil {
		return r, err
	}
	t0 := time.Now()
	cmd := exec.Command(meshext, append([]string{"run", "--dir", resDir, "--xds", "ads", "--ads-listen", ads,
		"--status-listen", status, "--debounce", debounce.String(), "--log-level", runLogLevel},
		pluginArgs(meshext, plugin)...)...)
	exited, stop, err := startProcess(cmd, logf)
	if err != nil {
		return r, err
	}
	defer stop()
	// Envoy is LIVE only once meshext run has loaded, rendered and sent the
	// initial config: at 10k services that is well past Pinned's 20 s on a
	// busy machine.
	opts := envoyproc.Pinned(envoyBin, bootPath, dir, "run-ads-envoy", pluginEnv(plugin))
	opts.ReadyTimeout = 180 * time.Second
	e, err := envoyproc.Start(opts)
	if err != nil {
		return r, err
	}
	defer e.Stop()
	// Initial config: every cluster (N services + meshext's own) is active.
	err = whileRunning(exited, logf.Name(), 10*time.Millisecond, 120*time.Second, func() bool {
		v, _ := strconv.Atoi(typedStat(e, "Gauges", "cluster_manager.active_clusters"))
		return v >= n && cdsVersion(e) != ""
	}, fmt.Sprintf("Envoy did not get %d clusters over ADS", n))
	if err != nil {
		return r, err
	}
	r.EnvoyInitialMS = ms(time.Since(t0)) // run + Envoy start → all clusters active
	r.EnvoyRSSMB = envoyproc.RSSMB(e.Pid())
	r.EnvoyInotify = envoyproc.InotifyInstances(e.Pid())
	prev := cdsVersion(e)
	for k := 0; k < changes; k++ {
		i := (k*7919 + 13) % n
		t0 := time.Now()
		if _, err := editOne(resDir, i, 62000+k); err != nil {
			return r, err
		}
		for deadline := time.Now().Add(60 * time.Second); ; {
			if v := cdsVersion(e); v != prev && v != "" {
				prev = v
				break
			}
			if time.Now().After(deadline) {
				return r, fmt.Errorf("Envoy's CDS version did not move within 60s of an edit")
			}
			time.Sleep(5 * time.Millisecond)
		}
		r.ChangeTotalMS = append(r.ChangeTotalMS, ms(time.Since(t0)))
	}
	r.EnvoyRejected = rejected(e)
	r.ControllerRSSMB = envoyproc.RSSMB(cmd.Process.Pid)
	return r, nil
}

// cdsVersion is Envoy's CDS version_text.
func cdsVersion(e *envoyproc.Proc) string {
	return typedStat(e, "TextReadouts", "cluster_manager.cds.version_text")
}

// typedStat reads one stat asking Envoy for that type of stat only: a plain
// /stats filter walks every stat on Envoy's main thread, which at 10k
// clusters takes long enough, polled, to starve the xDS updates we wait for.
func typedStat(e *envoyproc.Proc, typ, name string) string {
	body, err := e.Get("/stats?type=" + typ + "&filter=^" + strings.ReplaceAll(name, ".", `\.`) + "$")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && k == name {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

// pluginArgs: with the plugin library, meshext run renders the Go filter (its
// default); without it, native RBAC, so Envoy can load the config either way.
func pluginArgs(meshext, plugin string) []string {
	out, _ := exec.Command(meshext, "run", "--help").CombinedOutput()
	if !strings.Contains(string(out), "-plugin") {
		return nil
	}
	if plugin == "" {
		return []string{"--plugin", "off"}
	}
	return []string{"--plugin", "on"}
}

// pluginEnv lets stock Envoy find libmeshext.so (a Go module: cgocheck off).
func pluginEnv(plugin string) []string {
	if plugin == "" {
		return nil
	}
	return []string{"GODEBUG=cgocheck=0", "ENVOY_DYNAMIC_MODULES_SEARCH_PATH=" + filepath.Dir(abs(plugin))}
}

// rejected is Envoy's count of rejected CDS and LDS updates, "cds/lds".
func rejected(e *envoyproc.Proc) string {
	return orZero(e.StatValue("cluster_manager.cds.update_rejected")) + "/" + orZero(e.StatValue("listener_manager.lds.update_rejected"))
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// startProcess starts cmd with its output in logf. exited closes when it
// ends; stop interrupts it and waits (killing it after 5 s) until it has exited.
// whileRunning polls done every interval until it holds, the meshext run
// process exits (an error with its log's tail), or limit passes (an error
// saying what did not happen).
func whileRunning(exited <-chan struct{}, logPath string, every, limit time.Duration, done func() bool, what string) error {
	for deadline := time.Now().Add(limit); !done(); {
		select {
		case <-exited:
			return fmt.Errorf("meshext run exited: %s", envoyproc.Tail(logPath, 400))
		case <-time.After(every):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s within %s", what, limit)
		}
	}
	return nil
}

func startProcess(cmd *exec.Cmd, logf *os.File) (exited <-chan struct{}, stop func(), err error) {
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return done, func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}, nil
}

// runLogLevel is meshext run's --log-level (MESHEXT_CPBENCH_LOG_LEVEL, for
// reading each reload's "took" in meshext-run.log; warn by default).
var runLogLevel = func() string {
	if v := os.Getenv("MESHEXT_CPBENCH_LOG_LEVEL"); v != "" {
		return v
	}
	return "warn"
}()

// adsBootstrap writes out, node's Envoy bootstrap for meshext run's ADS at
// ads (delta xDS when delta), with its admin on port admin.
func adsBootstrap(meshext, ads, node string, admin int, out string, delta bool) error {
	args := []string{"bootstrap", "--xds", "ads", "--ads-address", ads, "--node", node,
		"--admin-port", fmt.Sprint(admin), "--out", out}
	if delta {
		args = append(args, "--delta")
	}
	if b, err := exec.Command(meshext, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("meshext bootstrap --xds ads: %v: %s", err, b)
	}
	return nil
}

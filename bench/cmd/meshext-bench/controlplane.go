package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshext/meshext/plugin/envoytest"
)

type cpConfig struct {
	quick                   bool
	cpbench, meshext, envoy string
	plugin                  string // libmeshext.so ("" = meshext run --plugin off)
	workDir                 string
}

// cpResult mirrors meshext-cpbench's JSON.
type cpResult struct {
	N              int       `json:"n"`
	Files          int       `json:"files"`
	LoadMS         float64   `json:"load_ms"`
	BuildMS        float64   `json:"build_ms"`
	RenderMS       float64   `json:"render_ms"`
	WriteMS        float64   `json:"write_ms"`
	RewriteMS      float64   `json:"rewrite_ms"`
	TotalMS        float64   `json:"total_ms"`
	Clusters       int       `json:"clusters"`
	Listeners      int       `json:"listeners"`
	Secrets        int       `json:"secrets"`
	CDSBytes       int64     `json:"cds_bytes"`
	LDSBytes       int64     `json:"lds_bytes"`
	HeapLiveMB     float64   `json:"heap_live_mb"`
	TotalAllocMB   float64   `json:"total_alloc_mb"`
	MaxRSSMB       float64   `json:"max_rss_mb"`
	DropRSSMB      float64   `json:"drop_rss_mb"`
	EnvoyInitialMS float64   `json:"envoy_initial_ms"`
	EnvoyRSSMB     float64   `json:"envoy_rss_mb"`
	ChangePipeMS   []float64 `json:"change_pipeline_ms"`
	ChangeApplyMS  []float64 `json:"change_apply_ms"`
	ChangeTotalMS  []float64 `json:"change_total_ms"`
	EnvoyRejected  string    `json:"envoy_update_rejected"`
	ControllerRSS  float64   `json:"controller_rss_mb"`
	EnvoyInotify   int       `json:"envoy_inotify"`
}

func runControlPlane(ctx context.Context, cfg cpConfig) string {
	var b strings.Builder
	b.WriteString("## 2. Control plane\n\n")
	if cfg.cpbench == "" {
		why := "bench/cmd/meshext-cpbench did not build"
		if log := strings.TrimSpace(readFile("bin/meshext-cpbench.build.log")); log != "" {
			why += ": " + oneLine(lastLines(log, 3))
		}
		fmt.Fprintf(&b, "not available: %s\n\n", why)
		return b.String()
	}
	sizes, applySizes, changes := []int{100, 1000, 10000}, []int{100, 1000, 10000}, 5
	limit := 240 * time.Second
	if cfg.quick {
		sizes, applySizes, changes = []int{100}, []int{100}, 2
		limit = 60 * time.Second
	}
	b.WriteString("Each N runs in a fresh `meshext-cpbench` process (so peak RSS is that N's): it generates N MeshExternalServices as YAML " +
		"(100 per file; TLS with an inline CA, server name and exact SAN; two HostnameGenerators, so two hostnames each; loopback IP endpoints), then runs the " +
		"controller pipeline in-process exactly as `meshext run` does: `resource.Load` → `model.Build` (validation, VIPs, hostnames, TLS) → " +
		"`render.Render` → `xds.FileWriter.Write` (atomic file drop as one batch: temp files, one syncfs, renames in order, one fsync per directory; CDS/LDS per node plus one SDS file per secret, trust anchors shared by content: one CA, one secret). " +
		"Rewrite = the same config written again (unchanged files are skipped by content hash). Peak RSS: files → drops = the process's peak when the first drop is written (the target's measure); with rewrite = its peak at the end, the first run's output still held while the second run renders. Drop format: json (protojson's JSON form, printed by meshext's own encoder; `meshext run`'s default) or pb (binary protobuf, `meshext run --xds-format pb`; Envoy reads either by the file extension).\n\n")
	b.WriteString("| N MES | drop format | clusters / listeners / secrets | load | build | render | write files | rewrite (no change) | total | CDS + LDS size | live heap | allocated | peak RSS files → drops | peak RSS with rewrite |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var cmds []string
	for _, n := range sizes {
		for _, format := range []string{"json", "pb"} {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(os.Stderr, "bench: control plane stages N=%d (%s)\n", n, format)
			dir := filepath.Join(cfg.workDir, fmt.Sprintf("cp-stages-%d-%s", n, format))
			argv := []string{cfg.cpbench, "stages", "-n", strconv.Itoa(n), "-dir", dir, "-format", format}
			cmds = append(cmds, shellJoin(relArgv(argv)))
			r, _, err := runCP(ctx, argv, limit)
			if err != nil {
				fmt.Fprintf(&b, "| %d | %s | %s | | | | | | | | | | | |\n", n, format, failed(fmt.Sprintf("control plane stages N=%d (%s)", n, format), err))
				continue
			}
			fmt.Fprintf(&b, "| %d | %s | %d / %d / %d | %s | %s | %s | %s | %s | %s | %.1f MB | %.0f MB | %.0f MB | %.0f MB | %.0f MB |\n",
				n, format, r.Clusters, r.Listeners, r.Secrets, msCell(r.LoadMS), msCell(r.BuildMS), msCell(r.RenderMS), msCell(r.WriteMS), msCell(r.RewriteMS),
				msCell(r.TotalMS), float64(r.CDSBytes+r.LDSBytes)/1e6, r.HeapLiveMB, r.TotalAllocMB, r.DropRSSMB, r.MaxRSSMB)
		}
	}
	b.WriteString("\nReproduce:\n\n```\n" + strings.Join(cmds, "\n") + "\n```\n\n")

	b.WriteString("### Change → Envoy\n\n")
	if cfg.envoy == "" {
		b.WriteString("not available: no Envoy binary (make envoy)\n\n")
		return b.String()
	}
	fmt.Fprintf(&b, "A real Envoy (`--concurrency 1`) reads the file drop through `render.Bootstrap` (path_config_source + watched_directory). After its initial config is applied, "+
		"one MES's endpoint port is edited in its resource file %d times; pipeline = edit + load → build → render → write; apply = from the renamed cds.json to Envoy's "+
		"`cluster_manager.cds.version_text` stat equal to the file's `version_info` (admin polled every 2 ms); total = edit → Envoy reports the version. Median and max over the changes.\n\n", changes)
	b.WriteString("| N MES | drop format | Envoy initial load | Envoy RSS | Envoy inotify instances | pipeline p50 / max | Envoy apply p50 / max | edit → Envoy p50 / max | rejected updates (CDS/LDS) |\n|---|---|---|---|---|---|---|---|---|\n")
	cmds = nil
	type applyRun struct {
		n      int
		format string
	}
	var applyRuns []applyRun
	for _, n := range applySizes {
		applyRuns = append(applyRuns, applyRun{n, "json"})
		if n >= 10000 {
			applyRuns = append(applyRuns, applyRun{n, "pb"})
		}
	}
	for _, ar := range applyRuns {
		if ctx.Err() != nil {
			break
		}
		n := ar.n
		fmt.Fprintf(os.Stderr, "bench: control plane change→Envoy N=%d (%s)\n", n, ar.format)
		dir := filepath.Join(cfg.workDir, fmt.Sprintf("cp-apply-%d-%s", n, ar.format))
		argv := []string{cfg.cpbench, "apply", "-n", strconv.Itoa(n), "-dir", dir, "-envoy", cfg.envoy, "-changes", strconv.Itoa(changes), "-format", ar.format}
		cmds = append(cmds, shellJoin(relArgv(argv)))
		r, _, err := runCP(ctx, argv, limit)
		if err != nil {
			fmt.Fprintf(&b, "| %d | %s | %s | | | | | | |\n", n, ar.format, failed(fmt.Sprintf("control plane change→Envoy N=%d (%s)", n, ar.format), err))
			continue
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %.0f MB | %d | %s | %s | %s | %s |\n", n, ar.format, msCell(r.EnvoyInitialMS), r.EnvoyRSSMB, r.EnvoyInotify,
			medMax(r.ChangePipeMS), medMax(r.ChangeApplyMS), medMax(r.ChangeTotalMS), orNA(r.EnvoyRejected))
	}
	b.WriteString("\nReproduce:\n\n```\n" + strings.Join(cmds, "\n") + "\n```\n\n")
	fmt.Fprintf(&b, "Envoy opens one inotify instance per file-based SDS source, i.e. per secret file, plus the CDS/LDS watches; Linux limits inotify instances per user "+
		"(`fs.inotify.max_user_instances`, %s on this host during the run; the kernel default is 128, shared by every process of the user). %s\n\n",
		orNA(strings.TrimSpace(readFile("/proc/sys/fs/inotify/max_user_instances"))), inotifyNote())
	runSizes := []int{100}
	if !cfg.quick {
		runSizes = []int{100, 1000, 10000}
	}
	b.WriteString(runMeshextRun(ctx, cfg, runSizes, changes, limit))
	b.WriteString(runFleet(ctx, cfg, limit))
	return b.String()
}

// runCP runs one meshext-cpbench child, bounded, in a fresh work directory
// (the value of its -dir flag).
func runCP(ctx context.Context, argv []string, limit time.Duration) (cpResult, time.Duration, error) {
	var r cpResult
	for i, a := range argv[:len(argv)-1] {
		if a == "-dir" {
			if err := os.RemoveAll(argv[i+1]); err != nil {
				return r, 0, err
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := cmd.Output()
	wall := time.Since(t0)
	if cctx.Err() == context.DeadlineExceeded {
		return r, wall, fmt.Errorf("did not finish within %s", limit)
	}
	if err != nil {
		return r, wall, fmt.Errorf("%v: %s", err, lastLines(stderr.String(), 3))
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, wall, fmt.Errorf("bad output: %v", err)
	}
	// The kernel's view of the child's peak RSS agrees with getrusage(SELF); keep the larger.
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		if mb := float64(ru.Maxrss) / 1024; mb > r.MaxRSSMB {
			r.MaxRSSMB = mb
		}
	}
	return r, wall, nil
}

func msCell(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1f s", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func medMax(v []float64) string {
	if len(v) == 0 {
		return "n/a"
	}
	return msCell(envoytest.Median(v)) + " / " + msCell(slices.Max(v))
}

// relArgv shows repository-relative paths for the binaries in commands.
func relArgv(argv []string) []string {
	out := append([]string(nil), argv...)
	wd, _ := os.Getwd()
	for i, a := range out {
		if snapshotDir != "" && filepath.Dir(a) == snapshotDir {
			out[i] = filepath.Join("bin", filepath.Base(a))
			continue
		}
		if r, err := filepath.Rel(wd, a); err == nil && !strings.HasPrefix(r, "..") && filepath.IsAbs(a) {
			out[i] = r
		}
	}
	return out
}

// runMeshextRun is the end-to-end measurement through the real `meshext run`
// process (fsnotify, debounce, reload) and a real Envoy on its file drop.
func runMeshextRun(ctx context.Context, cfg cpConfig, sizes []int, changes int, limit time.Duration) string {
	var b strings.Builder
	b.WriteString("### Change → Envoy through `meshext run`\n\n")
	if cfg.meshext == "" {
		b.WriteString("not available: bin/meshext not built\n\n")
		return b.String()
	}
	out, _ := runBounded(10*time.Second, cfg.meshext, "run", "--help")
	if !strings.Contains(out, "--dir") {
		fmt.Fprintf(&b, "not available: `meshext run` is not in this build (%s)\n\n", oneLine(lastLines(out, 1)))
		return b.String()
	}
	fmt.Fprintf(&b, "`meshext run` (default debounce 200 ms) watches the generated resource directory and serves a real Envoy (`--concurrency 1`, bootstrap from `meshext bootstrap`), "+
		"by file drop (`--xds file`) or over ADS (`--xds ads`; state of the world, or delta with `meshext bootstrap --delta`: Envoy's ads_config api_type DELTA_GRPC, so an edit "+
		"sends only the changed cluster and secret). A MES's endpoint port is edited %d times. file: drop = edit → `meshext run` renamed a cds.json with a new version "+
		"(includes the debounce), edit → Envoy = until Envoy's `cluster_manager.cds.version_text` equals it; start = `meshext run` start → first drop, initial load = Envoy start → that version; file-pb is the same with `--xds-format pb` (binary drops). "+
		"ads: initial load = `meshext run` and Envoy start → every cluster active; edit → Envoy = until Envoy's CDS version_text moves. "+
		"In file mode Envoy holds one inotify instance per SDS file and per route file (`meshext run` gives each HTTP service's route table its own file), so 10k HTTP services need over 10,000 (see the limit above).\n\n", changes)
	b.WriteString("| N MES | xds | run start → first drop | Envoy initial load | edit → drop p50 / max | edit → Envoy p50 / max | meshext run RSS | Envoy RSS | Envoy inotify instances | rejected updates (CDS/LDS) |\n|---|---|---|---|---|---|---|---|---|---|\n")
	var cmds []string
	envoyRSS := map[int]float64{} // N -> Envoy RSS over ADS (state of the world)
	for _, n := range sizes {
		for _, mode := range []string{"file", "file-pb", "ads", "ads-delta"} {
			if ctx.Err() != nil {
				break
			}
			if mode == "file-pb" && n < 1000 {
				continue
			}
			fmt.Fprintf(os.Stderr, "bench: control plane meshext run --xds %s N=%d\n", mode, n)
			dir := filepath.Join(cfg.workDir, fmt.Sprintf("cp-run-%s-%d", mode, n))
			xdsMode, variant, _ := strings.Cut(mode, "-")
			argv := []string{cfg.cpbench, "run", "-xds", xdsMode, "-n", strconv.Itoa(n), "-dir", dir, "-envoy", cfg.envoy, "-meshext", cfg.meshext, "-changes", strconv.Itoa(changes)}
			switch variant {
			case "delta":
				argv = append(argv, "-delta")
			case "pb":
				argv = append(argv, "-format", "pb")
			}
			if cfg.plugin != "" {
				argv = append(argv, "-plugin", cfg.plugin)
			}
			cmds = append(cmds, shellJoin(relArgv(argv)))
			r, _, err := runCP(ctx, argv, limit)
			if err != nil {
				fmt.Fprintf(&b, "| %d | %s | %s | | | | | | | |\n", n, mode, failed(fmt.Sprintf("meshext run --xds %s N=%d", mode, n), err))
				continue
			}
			start, drop := msCell(r.TotalMS), medMax(r.ChangePipeMS)
			if xdsMode == "ads" {
				start, drop = "n/a", "n/a"
			}
			if mode == "ads" {
				envoyRSS[n] = r.EnvoyRSSMB
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %.0f MB | %.0f MB | %d | %s |\n", n, mode, start, msCell(r.EnvoyInitialMS),
				drop, medMax(r.ChangeTotalMS), r.ControllerRSS, r.EnvoyRSSMB, r.EnvoyInotify, orNA(r.EnvoyRejected))
		}
	}
	b.WriteString("\nReproduce:\n\n```\n" + strings.Join(cmds, "\n") + "\n```\n\n")
	if base, ok := envoyRSS[sizes[0]]; ok && len(envoyRSS) > 1 {
		b.WriteString("Envoy's own memory per service (ADS, state of the world; RSS after the initial config, difference to the smallest N over the difference in N):\n\n" +
			"| N MES | Envoy RSS | per service |\n|---|---|---|\n")
		for _, n := range sizes[1:] {
			if rss, ok := envoyRSS[n]; ok {
				fmt.Fprintf(&b, "| %d | %.0f MB | %.1f KB |\n", n, rss, (rss-base)*1024/float64(n-sizes[0]))
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// fleetResult mirrors meshext-cpbench fleet's JSON.
type fleetResult struct {
	N                     int       `json:"n"`
	Nodes                 int       `json:"nodes"`
	Envoys                int       `json:"envoys"`
	Delta                 bool      `json:"delta"`
	InitialMS             float64   `json:"initial_ms"`
	ChangeMS              []float64 `json:"change_ms"`
	ChangeFirstMS         []float64 `json:"change_first_ms"`
	ControllerCPUInitialS float64   `json:"controller_cpu_initial_s"`
	ControllerCPUChangeMS []float64 `json:"controller_cpu_change_ms"`
	ControllerRSSMB       float64   `json:"controller_rss_mb"`
	ControllerPeakMB      float64   `json:"controller_peak_mb"`
	EnvoyRSSMB            float64   `json:"envoy_rss_mb"`
	Rejected              int       `json:"rejected"`
}

// runFleet is one `meshext run` serving many nodes over ADS.
func runFleet(ctx context.Context, cfg cpConfig, limit time.Duration) string {
	var b strings.Builder
	b.WriteString("### Fleet: one `meshext run` serving many Envoys over ADS\n\n")
	if cfg.meshext == "" {
		b.WriteString("not available: bin/meshext not built\n\n")
		return b.String()
	}
	n, nodes, envoys, changes := 100, 100, 5, 5
	if cfg.quick {
		n, nodes, envoys, changes = 20, 10, 1, 2
	}
	fmt.Fprintf(&b, "One `meshext run --xds ads` on its unix socket (peer credentials) with %d MeshExternalServices (TLS, as above) and %d Dataplanes, so %d xDS nodes with every service each. "+
		"%d of the nodes are real Envoys (`--concurrency 1`, `meshext bootstrap`); the others are gRPC clients in the harness that do what Envoy does on one ADS stream: "+
		"CDS and LDS wildcard, SDS for the secrets their clusters name, every response parsed and ACKed (SotW: version and nonce; delta: nonce and subscription changes). "+
		"A MES's endpoint port is edited %d times; edit → all ACKed = until the last node ACKed the new CDS (Envoys: `cluster_manager.cds.update_success` moved, admin polled every 10 ms), "+
		"so it includes the 200 ms debounce; CPU = meshext run's user+system time from /proc. Initial = `meshext run` start → every node ACKed its first CDS.\n\n", n, nodes, nodes, envoys, changes)
	b.WriteString("| nodes (Envoys) | xDS | initial | meshext CPU, initial | edit → first node ACK p50 | edit → all ACKed p50 / max | meshext CPU per edit p50 / max | meshext RSS / peak | Envoy RSS (mean) | NACKs |\n|---|---|---|---|---|---|---|---|---|---|\n")
	var cmds []string
	for _, delta := range []bool{false, true} {
		if ctx.Err() != nil {
			break
		}
		mode := "SotW"
		if delta {
			mode = "delta"
		}
		fmt.Fprintf(os.Stderr, "bench: control plane fleet %s nodes=%d\n", mode, nodes)
		dir := filepath.Join(cfg.workDir, fmt.Sprintf("cp-fleet-%s-%d", mode, nodes))
		argv := []string{cfg.cpbench, "fleet", "-n", strconv.Itoa(n), "-nodes", strconv.Itoa(nodes), "-envoys", strconv.Itoa(envoys),
			"-dir", dir, "-envoy", cfg.envoy, "-meshext", cfg.meshext, "-changes", strconv.Itoa(changes)}
		if delta {
			argv = append(argv, "-delta")
		}
		cmds = append(cmds, shellJoin(relArgv(argv)))
		r, err := runFleetCP(ctx, argv, limit)
		if err != nil {
			fmt.Fprintf(&b, "| %d (%d) | %s | %s | | | | | | | |\n", nodes, envoys, mode, failed(fmt.Sprintf("fleet %s", mode), err))
			continue
		}
		fmt.Fprintf(&b, "| %d (%d) | %s | %s | %.2f s | %s | %s | %s | %.0f / %.0f MB | %.0f MB | %d |\n", r.Nodes, r.Envoys, mode, msCell(r.InitialMS),
			r.ControllerCPUInitialS, medianCell(r.ChangeFirstMS), medMax(r.ChangeMS), medMax(r.ControllerCPUChangeMS), r.ControllerRSSMB, r.ControllerPeakMB, r.EnvoyRSSMB, r.Rejected)
	}
	b.WriteString("\nReproduce:\n\n```\n" + strings.Join(cmds, "\n") + "\n```\n\n")
	return b.String()
}

func medianCell(v []float64) string {
	if len(v) == 0 {
		return "n/a"
	}
	return msCell(envoytest.Median(v))
}

// runFleetCP runs one meshext-cpbench fleet child, bounded, in a fresh work directory.
func runFleetCP(ctx context.Context, argv []string, limit time.Duration) (fleetResult, error) {
	var r fleetResult
	for i, a := range argv[:len(argv)-1] {
		if a == "-dir" {
			if err := os.RemoveAll(argv[i+1]); err != nil {
				return r, err
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if cctx.Err() == context.DeadlineExceeded {
		return r, fmt.Errorf("did not finish within %s", limit)
	}
	if err != nil {
		return r, fmt.Errorf("%v: %s", err, lastLines(stderr.String(), 3))
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("bad output: %v", err)
	}
	return r, nil
}

// inotifyNote says whether build/bench.sh raised the inotify limit.
func inotifyNote() string {
	if v := os.Getenv("MESHEXT_BENCH_INOTIFY_RAISED_FROM"); v != "" {
		return "build/bench.sh raised it from " + v + " for this run, since 10k HTTP services' route files need over 10,000."
	}
	return ""
}

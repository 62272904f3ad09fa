package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshext/meshext/e2e/envoyproc"
)

// Throughput on a shared VM moves with the host; the instructions Envoy
// executes per request do not. Under callgrind (valgrind's instruction
// counter; this VM exposes no hardware counters to perf) each variant's
// Envoy serves a fixed number of requests with counting switched on only
// around them, so (c)/(b) in instructions is the configs' cost difference
// alone, repeatable to about 0.4 % (gRPC about 1 %: HTTP/2 frames per
// wake-up depend on timing). It leaves out the kernel's
// share (the syscalls per request, equal between variants with the same
// connection handling) and cache effects.

// irConfig says whether and how to count; zero valgrind: not counted.
type irConfig struct {
	valgrind, control string // valgrind and callgrind_control
	requests, warmup  int
	protos            map[string]bool // nil: every protocol
	missing           string          // why not counted, when valgrind is empty
}

// irVariants are the variants counted, in order.
var irVariants = []int{vB, vC, vCP, vD}

// countInstructions restarts r's Envoy (stopped first: the config binds
// fixed ports) under callgrind and returns its instructions per request:
// all threads', and the busiest thread's (the worker's). The main thread's
// timed work (the stats flush every 5 s) grows with the wall time valgrind
// takes, so on a busy host the all-threads figure carries some of the
// host's speed; the worker's does not.
func countInstructions(ctx context.Context, cfg dpConfig, proto string, r *variantRun) (all, worker float64, err error) {
	ic := cfg.instructions
	r.envoy.Stop()
	r.envoy = nil
	o := r.opts
	out := filepath.Join(cfg.workDir, o.Name+".callgrind")
	o.Name += "-callgrind"
	o.ReadyTimeout = 3 * time.Minute // Envoy starts ~50x slower under valgrind
	o.StopTimeout = 30 * time.Second
	bin := o.Bin
	o.Cmd = func(c *exec.Cmd) {
		c.Args = append([]string{ic.valgrind, "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes", "--callgrind-out-file=" + out, bin}, c.Args[1:]...)
		c.Path = ic.valgrind
	}
	old, _ := filepath.Glob(out + "*")
	for _, f := range old {
		_ = os.Remove(f)
	}
	e, err := envoyproc.Start(o)
	if err != nil {
		return 0, 0, err
	}
	defer e.Stop()
	if err := cfg.pinEnvoy(e); err != nil {
		return 0, 0, err
	}
	spec := loadSpec{Proto: proto, Target: r.target, Conns: cfg.conns[proto], Streams: cfg.streams, WorkDir: cfg.workDir}
	if err := fixedLoad(ctx, spec, cfg.h2load, ic.warmup); err != nil {
		return 0, 0, fmt.Errorf("warm-up: %w", err)
	}
	pid := strconv.Itoa(e.Pid())
	control := func(args ...string) error {
		c, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if b, err := exec.CommandContext(c, ic.control, append(args, pid)...).CombinedOutput(); err != nil {
			return fmt.Errorf("callgrind_control %s: %v: %s", strings.Join(args, " "), err, lastLines(string(b), 3))
		}
		return nil
	}
	// Count exactly the measured requests, then dump.
	if err := control("-i", "on"); err != nil {
		return 0, 0, err
	}
	if err := fixedLoad(ctx, spec, cfg.h2load, ic.requests); err != nil {
		return 0, 0, err
	}
	if err := control("-i", "off"); err != nil {
		return 0, 0, err
	}
	if err := control("-d"); err != nil {
		return 0, 0, err
	}
	// One dump file per thread: <out>.1-01, <out>.1-02, ...
	dumps, _ := filepath.Glob(out + ".1-*")
	if len(dumps) == 0 {
		return 0, 0, fmt.Errorf("callgrind wrote no dump %s.1-*", out)
	}
	var sum, most int64
	for _, d := range dumps {
		ir, err := callgrindTotal(d)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", filepath.Base(d), err)
		}
		sum, most = sum+ir, max(most, ir)
	}
	n := float64(ic.requests)
	return float64(sum) / n, float64(most) / n, nil
}

// callgrindTotal reads the "totals:" line of a callgrind dump (Ir only).
func callgrindTotal(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseCallgrindTotals(f)
}

func parseCallgrindTotals(r io.Reader) (int64, error) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "totals:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("callgrind dump without a totals line")
}

// fixedLoad sends exactly n requests (tcp: n echo round trips), all of
// which must succeed.
func fixedLoad(ctx context.Context, s loadSpec, h2load string, n int) error {
	s.Requests = n
	res, err := runLoad(ctx, s, "", h2load)
	if err != nil {
		return err
	}
	if res.Requests != int64(n) || res.Errors > 0 {
		return fmt.Errorf("%d of %d requests succeeded, %d errors", res.Requests, n, res.Errors)
	}
	return nil
}

// irSection is the Markdown of the instruction counts, one row per protocol.
func irSection(cfg dpConfig, rows []string) string {
	var b strings.Builder
	b.WriteString("**Instructions per request (callgrind).** ")
	if cfg.instructions.valgrind == "" {
		fmt.Fprintf(&b, "%s\n\n", notAvailable("instruction counts", cfg.instructions.missing))
		return b.String()
	}
	fmt.Fprintf(&b, "Each counted variant's Envoy again, alone, under `valgrind --tool=callgrind --instr-atstart=no` (the same config and pinning; this VM exposes no hardware counters): "+
		"%d requests of warm-up, then counting switched on (`callgrind_control -i on`) for exactly %d requests (tcp: echo round trips) from h2load (`--h1` for HTTP/1.1) or the built-in echo client, then off and dumped. "+
		"Each cell: instructions of every Envoy thread in user space (not the kernel's), then in brackets the busiest thread's, Envoy's worker (`--separate-threads=yes`). "+
		"The worker's figure barely depends on the host's speed, so its ratios are the configs' own cost difference (over runs it moves by about 0.4 %%, gRPC's by about 1 %%: how many HTTP/2 frames Envoy handles per wake-up depends on timing); the main thread's timed work (the stats flush every 5 s) grows with the wall time valgrind takes, so the all-threads figure carries a little of the host. "+
		"What separates (c) from (b) in these counts (the retry policy of Kuma's default MeshRetry, which (c) carries, and the x-request-id (b) makes up and (c) does not without a MeshAccessLog): `bench/callgrind-defaults.sh <this run's work directory>`.\n\n",
		cfg.instructions.warmup, cfg.instructions.requests)
	b.WriteString("| protocol | (b) | (c) | (c+p) | (d) | (c)/(b) | (c+p)/(b) | (d)/(c) |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r)
	}
	return b.String() + "\n"
}

// irRow is one protocol's row: instructions per request and the ratios,
// all threads first, the worker thread's in brackets.
func irRow(name string, runs []*variantRun) string {
	cell := func(vi int) string {
		r := runs[vi]
		switch {
		case r.irWhy != "":
			return whyCell(r.irWhy)
		case r.ir == 0:
			return "n/a"
		}
		return fmt.Sprintf("%.0f (%.0f)", r.ir, r.irWorker)
	}
	rat := func(x, y int) string {
		if runs[x].ir == 0 || runs[y].ir == 0 || runs[x].irWhy != "" || runs[y].irWhy != "" {
			return "n/a"
		}
		return fmt.Sprintf("%s (%s)", ratio(runs[x].ir/runs[y].ir), ratio(runs[x].irWorker/runs[y].irWorker))
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", name, cell(vB), cell(vC), cell(vCP), cell(vD), rat(vC, vB), rat(vCP, vB), rat(vD, vC))
}

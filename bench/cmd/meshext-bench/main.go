// Command meshext-bench measures meshext side by side with its baselines in
// one run and writes a Markdown report to bench/results/ (see build/bench.sh).
//
//	meshext-bench -mode full|quick [-envoy PATH] [-meshext PATH] [-plugin PATH] [-out DIR]
//	meshext-bench upstream -kind http|https|grpc|tcp   (a stand-in upstream)
//	meshext-bench tcp-echo -c N -d 5s -size 16384 HOST:PORT  (the TCP load generator)
//
// Each section runs on its own: a section whose pieces are missing reports
// "not available: <why>" and the rest still run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "upstream" {
		os.Exit(runUpstream(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "tcp-echo" {
		os.Exit(runTCPEcho(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:]))
}

type options struct {
	mode      string
	envoy     string
	meshext   string
	plugin    string
	cpbench   string
	gobin     string
	out       string
	repo      string
	sections  string
	keepWork  bool
	durations time.Duration
	rounds    int
	pin       bool
}

func run(args []string) int {
	var o options
	fs := flag.NewFlagSet("meshext-bench", flag.ContinueOnError)
	fs.StringVar(&o.mode, "mode", "full", "full (the published report) or quick (a smoke run for CI)")
	fs.StringVar(&o.envoy, "envoy", "", "Envoy binary (default: $ENVOY_BIN or .tools/envoy)")
	fs.StringVar(&o.meshext, "meshext", "bin/meshext", "meshext CLI")
	fs.StringVar(&o.plugin, "plugin", "bin/libmeshext.so", "meshext Envoy dynamic module")
	fs.StringVar(&o.cpbench, "cpbench", "bin/meshext-cpbench", "control-plane stage benchmark binary (built from bench/cmd/meshext-cpbench)")
	fs.StringVar(&o.gobin, "go", "go", "go command, for the packages' Go benchmarks")
	fs.StringVar(&o.out, "out", "bench/results", "report directory")
	fs.StringVar(&o.repo, "repo", ".", "repository root")
	fs.StringVar(&o.sections, "sections", "datapath,forwardproxy,egress,controlplane,gobench", "comma-separated sections to run")
	keep := fs.String("keep", "", "keep the work directory (configs, logs) after the run: true or false (default: true full, false quick)")
	fs.DurationVar(&o.durations, "duration", 0, "load duration per run, whole seconds (default: 2s full, 1s quick)")
	fs.BoolVar(&o.pin, "pin", true, "give each Envoy the last CPU to itself, clients and upstreams the others (2+ CPUs)")
	fs.IntVar(&o.rounds, "rounds", 0, "interleaved rounds per protocol (default: 9 for the data path and 5 for the egress path full, 1 quick)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: meshext-bench [flags]\n\nRuns the benchmark sections and writes bench/results/<date>-<host>[-quick].md and latest[-quick].md.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if o.mode != "full" && o.mode != "quick" {
		fmt.Fprintf(os.Stderr, "meshext-bench: -mode must be full or quick, not %q\n", o.mode)
		return 2
	}
	quick := o.mode == "quick"
	switch *keep {
	case "":
		o.keepWork = !quick
	case "true", "false":
		o.keepWork = *keep == "true"
	default:
		fmt.Fprintf(os.Stderr, "meshext-bench: -keep must be true or false, not %q\n", *keep)
		return 2
	}
	if o.durations == 0 {
		o.durations = map[bool]time.Duration{false: 2 * time.Second, true: time.Second}[quick]
	}
	explicitRounds := o.rounds != 0
	if o.rounds == 0 {
		o.rounds = map[bool]int{false: 5, true: 1}[quick]
	}
	if o.envoy == "" {
		o.envoy = os.Getenv("ENVOY_BIN")
	}
	if o.envoy == "" {
		o.envoy = filepath.Join(o.repo, ".tools", "envoy", "envoy", "_bin", "envoy")
	}
	o.envoy = existing(o.envoy)
	o.meshext = existing(o.meshext)
	o.plugin = existing(o.plugin)
	o.cpbench = existing(o.cpbench)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	work, err := os.MkdirTemp("", "meshext-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshext-bench:", err)
		return 1
	}
	if !o.keepWork {
		defer os.RemoveAll(work)
	}
	// The tree is shared: another build or test may replace or delete bin/
	// files mid-run. Run from private copies.
	if err := snapshotBinaries(work, &o); err != nil {
		fmt.Fprintln(os.Stderr, "meshext-bench:", err)
		return 1
	}
	started := time.Now().UTC()
	host, _ := os.Hostname()
	var rep strings.Builder
	fmt.Fprintf(&rep, "# meshext benchmark report (%s mode)\n\n", o.mode)
	kept := "kept"
	if !o.keepWork {
		kept = "removed after the run; `-keep true` keeps it"
	}
	fmt.Fprintf(&rep, "Generated %s on host `%s` by `%s` (work directory with every config and log: `%s`, %s).\n\n",
		started.Format(time.RFC3339), host, reproduceAll(o.mode), work, kept)
	rep.WriteString(machineFacts(o))
	want := map[string]bool{}
	for _, s := range strings.Split(o.sections, ",") {
		s = strings.TrimSpace(s)
		switch s {
		case "datapath", "forwardproxy", "egress", "controlplane", "gobench":
			want[s] = true
		default:
			fmt.Fprintf(os.Stderr, "meshext-bench: unknown section %q (want datapath, forwardproxy, egress, controlplane, gobench)\n", s)
			return 2
		}
	}
	if want["datapath"] {
		conns := map[string]int{"tcp": 8, "http": 16, "grpc": 4, "tls": 16}
		rep.WriteString(runDataPath(ctx, dpConfig{
			envoy: o.envoy, wrk: lookPath("wrk"), h2load: lookPath("h2load"),
			durations: o.durations, rounds: dataPathRounds(o.rounds, explicitRounds, quick), warmup: map[bool]time.Duration{false: time.Second, true: 0}[quick],
			workDir: work, conns: conns, streams: 8,
			render:       renderer{meshext: o.meshext, cpbench: o.cpbench, plugin: o.plugin},
			pin:          o.pin,
			instructions: instructionsConfig(quick),
		}))
	}
	if want["forwardproxy"] {
		rep.WriteString(runForwardProxy(ctx, fpConfig{envoy: o.envoy, plugin: o.plugin, wrk: lookPath("wrk"), gobin: o.gobin, repo: o.repo,
			workDir: work, round: o.durations, rounds: map[bool]int{false: 9, true: 1}[quick], pin: o.pin}))
	}
	if want["egress"] {
		rep.WriteString(egressSection(ctx, o, work, quick))
	}
	if want["controlplane"] {
		rep.WriteString(runControlPlane(ctx, cpConfig{quick: quick, cpbench: o.cpbench, meshext: o.meshext, envoy: o.envoy, plugin: o.plugin, workDir: work}))
	}
	if want["gobench"] {
		rep.WriteString(runGoBenchmarks(ctx, o.gobin, o.repo, quick))
	}
	fmt.Fprintf(&rep, "---\nTotal harness time: %s. Load average at the end: %s (other work on the host during the run shows here and in the spread of rounds).\n",
		time.Since(started).Round(time.Second), firstLine(readFile("/proc/loadavg")))

	suffix := ""
	if quick {
		suffix = "-quick"
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "meshext-bench:", err)
		return 1
	}
	name := filepath.Join(o.out, fmt.Sprintf("%s-%s%s.md", started.Format("2006-01-02"), host, suffix))
	latest := filepath.Join(o.out, "latest"+suffix+".md")
	for _, p := range []string{name, latest} {
		if err := os.WriteFile(p, []byte(rep.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "meshext-bench:", err)
			return 1
		}
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s and %s in %s\n", name, latest, time.Since(started).Round(time.Second))
	if len(failures) > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d measurement(s) failed (the report says where):\n  %s\n", len(failures), strings.Join(failures, "\n  "))
		return 1
	}
	return 0
}

// failures are measurements that failed, as opposed to sections whose
// pieces are missing here ("not available"): a failing Go benchmark or
// harness binary, a variant whose Envoy never served. The report is written
// either way; run then exits 1, so `make bench-quick` fails CI.
var failures []string

// notAvailable is the report's text for a comparison whose pieces are
// missing here. Under CI=true it is a failure too: CI installs everything
// the benchmarks measure with (build/bench.sh, .ci/run), so a missing
// piece there is a broken setup, not a smaller report.
func notAvailable(what, why string) string {
	msg := "not available: " + oneLine(why)
	if os.Getenv("CI") == "true" {
		failures = append(failures, what+": "+msg)
	}
	return msg
}

// failed records a failure and returns the text for the report.
func failed(what string, err any) string {
	msg := oneLine(fmt.Sprint(err))
	failures = append(failures, what+": "+msg)
	return "failed: " + msg
}

func reproduceAll(mode string) string {
	if mode == "quick" {
		return "make bench-quick"
	}
	return "make bench"
}

func existing(p string) string {
	if p == "" {
		return ""
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func lookPath(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	return p
}

// selfPath is this program, for re-executing it as an upstream; snapshotDir
// holds the copies of the binaries (shown as bin/ in commands).
var selfPath, snapshotDir string

// snapshotBinaries copies the binaries the run uses into work/bin and points
// o (and selfPath) at the copies. libmeshext.so keeps its name: Envoy looks
// it up as lib<name>.so in ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
func snapshotBinaries(work string, o *options) error {
	dir := filepath.Join(work, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, p := range []*string{&self, &o.meshext, &o.plugin, &o.cpbench} {
		if *p == "" {
			continue
		}
		dst := filepath.Join(dir, filepath.Base(*p))
		if err := copyFile(*p, dst); err != nil {
			return fmt.Errorf("snapshot %s: %w", *p, err)
		}
		*p = dst
	}
	selfPath, snapshotDir = self, dir
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// instructionsConfig: full mode counts every protocol; quick mode, for CI,
// only HTTP/1.1 with few requests (valgrind runs Envoy ~50x slower).
func instructionsConfig(quick bool) irConfig {
	ic := irConfig{valgrind: lookPath("valgrind"), control: lookPath("callgrind_control"), requests: 2000, warmup: 500}
	if quick {
		ic.requests, ic.warmup, ic.protos = 300, 100, map[string]bool{"http": true}
	}
	if ic.valgrind == "" || ic.control == "" {
		ic.valgrind, ic.missing = "", "valgrind (apt-get install valgrind)"
	}
	return ic
}

// dataPathRounds is the data path's round count: what -rounds says, else 9
// in full mode. Its ratios are medians of per-round ratios, and on a shared
// VM five rounds left a config's (c)/(b) moving from 1.03 to 0.80 between
// two runs of the same configs.
func dataPathRounds(rounds int, explicit, quick bool) int {
	if explicit || quick {
		return rounds
	}
	return 9
}

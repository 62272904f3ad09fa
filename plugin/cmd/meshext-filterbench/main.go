// Command meshext-filterbench measures requests per second through a real
// Envoy with the meshext dynamic module against the same Envoy config
// without it, side by side in one run (envoytest.CompareRPS).
//
//	go run ./plugin/cmd/meshext-filterbench -envoy .tools/envoy/envoy/_bin/envoy -module-dir bin
//
// -noop, -native and -cref add reference flavors: the module's empty Go
// filter, the --plugin=off rendering, and a C module making the filter's
// calls into Envoy and nothing else.
//
// It prints a Markdown table, or JSON with -json. Exit status 1 on error.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/plugin/envoytest"
)

func main() {
	var o envoytest.CompareOptions
	flag.StringVar(&o.Envoy, "envoy", os.Getenv("ENVOY_BIN"), "Envoy binary (default $ENVOY_BIN)")
	flag.StringVar(&o.ModuleDir, "module-dir", "bin", "directory holding libmeshext.so (make plugin)")
	flag.IntVar(&o.Hostnames, "hostnames", 1000, "MES in the filter config")
	flag.IntVar(&o.Connections, "conns", 8, "concurrent keep-alive clients")
	flag.DurationVar(&o.Round, "round", time.Second, "length of one measured round")
	flag.IntVar(&o.Rounds, "rounds", 9, "rounds per flavor (interleaved)")
	flag.IntVar(&o.Concurrency, "workers", 1, "Envoy worker threads")
	flag.BoolVar(&o.MetadataOnAllows, "metadata-on-allows", false, "decision metadata on every request (the default is what the controller renders: ignoreClientCertificates, denyMetadataOnly)")
	flag.BoolVar(&o.WithNative, "native", false, "also measure the --plugin=off rendering (native routes + RBAC)")
	flag.BoolVar(&o.WithNoop, "noop", false, "also measure the module's empty filter (cost of any Go module)")
	flag.BoolVar(&o.Pin, "pin", true, "give Envoy the last CPU to itself and the load generator the others")
	flag.StringVar(&o.Wrk, "wrk", defaultWrk(), "wrk binary for the load (empty: a Go client)")
	flag.BoolVar(&o.SideBySide, "side-by-side", false, "also run the Go filter at the same time as the C reference and native RBAC (each pair sharing the CPU), -rounds rounds")
	cref := flag.Bool("cref", false, "also measure a C module making the filter's calls into Envoy and nothing else (Envoy's own price for the behaviour; needs cc)")
	asJSON := flag.Bool("json", false, "print JSON instead of a table")
	flag.Parse()
	if err := run(o, *cref, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "meshext-filterbench:", err)
		os.Exit(1)
	}
}

func run(o envoytest.CompareOptions, cref, asJSON bool) error {
	if o.Envoy == "" {
		return fmt.Errorf("-envoy or $ENVOY_BIN is required")
	}
	abs, err := filepath.Abs(o.ModuleDir)
	if err != nil {
		return err
	}
	o.ModuleDir = abs
	if _, err := os.Stat(filepath.Join(abs, "libmeshext.so")); err != nil {
		return fmt.Errorf("libmeshext.so not found in %s (run make plugin): %w", abs, err)
	}
	dir, err := os.MkdirTemp("", "meshext-filterbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	budget := time.Duration(4*o.Rounds+1)*o.Round + 2*time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	if cref {
		o.CReferenceDir = filepath.Join(dir, "cref")
		if err := os.Mkdir(o.CReferenceDir, 0o755); err != nil {
			return err
		}
		if _, err := envoytest.BuildCReference(ctx, os.Getenv("CC"), "", testenv.RepoRoot(), o.CReferenceDir, !o.MetadataOnAllows); err != nil {
			return err
		}
	}
	res, err := envoytest.CompareRPS(ctx, dir, o)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	lean := ""
	if res.Options.MetadataOnAllows {
		lean = ", metadata on allows"
	}
	fmt.Printf("| Envoy config (%d MES, %d conns, %d x %s per flavor%s) | req/s | Envoy CPU per request | requests | errors |\n", res.Options.Hostnames,
		res.Options.Connections, res.Options.Rounds, res.Options.Round, lean)
	fmt.Println("|---|---:|---:|---:|---:|")
	rows := []envoytest.FlavorResult{res.Baseline}
	if res.Noop != nil {
		rows = append(rows, *res.Noop)
	}
	rows = append(rows, res.Filter)
	if res.Native != nil {
		rows = append(rows, *res.Native)
	}
	if res.CRef != nil {
		rows = append(rows, *res.CRef)
	}
	for _, r := range rows {
		fmt.Printf("| %s | %.0f | %s | %d | %d |\n", r.Name, r.RPS, r.CPUPerRequest.Round(100*time.Nanosecond), r.Requests, r.Errors)
	}
	fmt.Printf("\nfilter overhead: %.1f%% of throughput, %+.1f%% Envoy CPU per request\n", res.OverheadPct, res.CPUOverheadPct)
	fmt.Printf("median over rounds of filter/baseline req/s: %.3f", res.MedianRatio)
	if res.Noop != nil {
		fmt.Printf(" (empty module: %.3f)", res.NoopMedianRatio)
	}
	if res.CRef != nil {
		fmt.Printf("; C reference module: %.3f", res.CRefMedianRatio)
	}
	load := "Go client"
	if o.Wrk != "" {
		load = "wrk"
	}
	fmt.Printf("\nload: %s; Envoy on a CPU of its own: %v\n", load, res.Pinned)
	for _, p := range res.Pairs {
		fmt.Printf("side by side, %s / %s: req/s %s, Envoy CPU per request %s (median of %d rounds), %d errors\n",
			p.X, p.Y, medianOf(p.RPSRatio), medianOf(p.CPURatio), len(p.RPSRatio), p.Errors)
	}
	return nil
}

// medianOf formats the median of v to three places ("n/a" when empty).
func medianOf(v []float64) string {
	if len(v) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", envoytest.Median(v))
}

// defaultWrk is wrk from PATH, if installed.
func defaultWrk() string {
	p, err := exec.LookPath("wrk")
	if err != nil {
		return ""
	}
	return p
}

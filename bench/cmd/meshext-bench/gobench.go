package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// goBench is one package's `go test -bench` whose output the report embeds.
type goBench struct {
	title, pkg           string
	bench, quickBench    string // -bench patterns (quickBench "" = bench)
	benchtime, quickTime string
	needs                string
}

var goBenches = []goBench{
	{title: "Plugin decision core", pkg: "./plugin/core", bench: ".", benchtime: "1s", quickTime: "100ms"},
	{title: "Plugin filter hot path (dynamic-module adapter: the allow fast path plugin/dynabi takes, and the whole filter on the SDK's fakes)", pkg: "./plugin/dynmod",
		bench: "^Benchmark(FastAllow|OnRequestHeaders)$", benchtime: "1s", quickTime: "100ms"},
	{title: "eBPF connect redirect", pkg: "./bpf", bench: ".", benchtime: "1s", quickTime: "100ms", needs: "root"},
	{title: "Controller reload (the `meshext run` pipeline after a one-service edit)", pkg: "./controller/run",
		bench: "^BenchmarkReload$/^mes=(100|1000)$", quickBench: "^BenchmarkReload$/^mes=100$", benchtime: "10x", quickTime: "3x"},
	{title: "Render", pkg: "./controller/render", bench: ".", benchtime: "1s", quickTime: "100ms"},
}

var benchFunc = regexp.MustCompile(`(?m)^func Benchmark\w+\(`)

func runGoBenchmarks(ctx context.Context, gobin, repo string, quick bool) string {
	var b strings.Builder
	b.WriteString("## 3. Go benchmarks: decision core, filter, redirect, controller\n\n")
	b.WriteString("The packages' own `go test -bench` output, embedded as printed.\n\n")
	for _, gb := range goBenches {
		pattern, benchtime := gb.bench, gb.benchtime
		if quick {
			benchtime = gb.quickTime
			if gb.quickBench != "" {
				pattern = gb.quickBench
			}
		}
		fmt.Fprintf(os.Stderr, "bench: go benchmarks %s\n", gb.pkg)
		fmt.Fprintf(&b, "### %s (`%s`)\n\n", gb.title, gb.pkg)
		if !hasBenchmarks(filepath.Join(repo, gb.pkg)) {
			fmt.Fprintf(&b, "%s\n\n", notAvailable("go benchmarks "+gb.pkg, "no Benchmark functions in "+gb.pkg+" yet"))
			continue
		}
		if gb.needs == "root" && os.Geteuid() != 0 {
			fmt.Fprintf(&b, "%s\n\n", notAvailable("go benchmarks "+gb.pkg, "needs root"))
			continue
		}
		argv := []string{gobin, "test", "-run", "^$", "-bench", pattern, "-benchmem", "-benchtime", benchtime, "-count", "1", gb.pkg}
		fmt.Fprintf(&b, "Reproduce: `%s`\n\n", shellJoin(argv))
		cctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
		cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			fmt.Fprintf(&b, "%s:\n\n```\n%s\n```\n\n", failed("go benchmarks "+gb.pkg, fmt.Sprintf("`go test` %v", err)), lastLines(string(out), 15))
			continue
		}
		fmt.Fprintf(&b, "```\n%s\n```\n\n", strings.TrimSpace(string(out)))
	}
	return b.String()
}

func hasBenchmarks(dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	for _, f := range files {
		if benchFunc.MatchString(readFile(f)) {
			return true
		}
	}
	return false
}

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
	title, pkg, needs string
}

var goBenches = []goBench{
	{"Plugin decision core", "./plugin/core", ""},
	{"eBPF connect redirect", "./bpf", "root"},
}

var benchFunc = regexp.MustCompile(`(?m)^func Benchmark\w+\(`)

func runGoBenchmarks(ctx context.Context, gobin, repo string, quick bool) string {
	var b strings.Builder
	b.WriteString("## 3. Decision core and redirect (Go benchmarks)\n\n")
	benchtime := "1s"
	if quick {
		benchtime = "100ms"
	}
	for _, gb := range goBenches {
		fmt.Fprintf(os.Stderr, "bench: go benchmarks %s\n", gb.pkg)
		fmt.Fprintf(&b, "### %s (`%s`)\n\n", gb.title, gb.pkg)
		if !hasBenchmarks(filepath.Join(repo, gb.pkg)) {
			fmt.Fprintf(&b, "not available: no Benchmark functions in %s yet\n\n", gb.pkg)
			continue
		}
		if gb.needs == "root" && os.Geteuid() != 0 {
			fmt.Fprintf(&b, "not available: needs root\n\n")
			continue
		}
		argv := []string{gobin, "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", benchtime, "-count", "1", gb.pkg}
		fmt.Fprintf(&b, "Reproduce: `%s`\n\n", strings.Join(argv[:], " "))
		cctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
		cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			fmt.Fprintf(&b, "not available: `go test` failed (%v):\n\n```\n%s\n```\n\n", err, lastLines(string(out), 15))
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

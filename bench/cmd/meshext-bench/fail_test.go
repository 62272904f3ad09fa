package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runFailing runs the harness on args and returns its exit code and report.
func runFailing(t *testing.T, args ...string) (int, string) {
	t.Helper()
	failures = nil
	t.Cleanup(func() { failures = nil })
	out := t.TempDir()
	code := run(append([]string{"-mode", "quick", "-out", out, "-meshext", "", "-plugin", ""}, args...))
	b, err := os.ReadFile(filepath.Join(out, "latest-quick.md"))
	if err != nil {
		t.Fatalf("no report written: %v", err)
	}
	return code, string(b)
}

// `make bench-quick` (CI) must fail, after writing its report, when a
// package's Go benchmark fails: here a repository whose plugin/core
// benchmark calls b.Fatal.
func TestQuickRunFailsWhenAGoBenchmarkFails(t *testing.T) {
	repo := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(repo, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/broken\n\ngo 1.22\n")
	write("plugin/core/core_test.go", "package core\n\nimport \"testing\"\n\nfunc BenchmarkBroken(b *testing.B) { b.Fatal(\"broken on purpose\") }\n")
	code, report := runFailing(t, "-sections", "gobench", "-repo", repo)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(report, "failed: `go test` exit status 1") || !strings.Contains(report, "broken on purpose") {
		t.Errorf("report does not show the failure:\n%s", report)
	}
}

// A harness binary that fails (here a meshext-cpbench that exits 3) fails
// the run too; a missing piece (no meshext binary) does not.
func TestQuickRunFailsWhenAHarnessBinaryFails(t *testing.T) {
	cpbench := filepath.Join(t.TempDir(), "meshext-cpbench")
	if err := os.WriteFile(cpbench, []byte("#!/bin/sh\necho 'cpbench: broken on purpose' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, report := runFailing(t, "-sections", "controlplane", "-cpbench", cpbench)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(report, "| 100 | json | failed: ") {
		t.Errorf("report does not show the failed stage run:\n%s", report)
	}

	// Nothing failed, a piece is missing: the run succeeds.
	t.Setenv("CI", "")
	code, report = runFailing(t, "-sections", "controlplane", "-cpbench", "")
	if code != 0 || !strings.Contains(report, "not available") {
		t.Errorf("missing cpbench: exit code %d, report:\n%s", code, report)
	}
}

// A comparison that cannot run says why in the report; under CI=true (where
// build/bench.sh and .ci/run install every piece) that fails the run.
func TestMissingPieceFailsUnderCI(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		code, report := runFailing(t, "-sections", "forwardproxy", "-envoy", filepath.Join(t.TempDir(), "no-envoy"))
		if !strings.Contains(report, "not available: no Envoy binary") {
			t.Fatalf("CI=%q: report does not say what is missing:\n%s", ci, report)
		}
		if want := map[string]int{"": 0, "true": 1}[ci]; code != want {
			t.Errorf("CI=%q: exit code %d, want %d", ci, code, want)
		}
	}
}

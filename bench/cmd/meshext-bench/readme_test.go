package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// bench/README.md names the harness's pieces by path; every path it names
// must exist (relative to bench/ or the repository root), so the README
// cannot drift from the tree. Build outputs (bin/...) and absolute paths are
// not checked.
func TestBenchREADMEPathsExist(t *testing.T) {
	benchDir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Dir(benchDir)
	b, err := os.ReadFile(filepath.Join(benchDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	exists := func(p string) bool {
		for _, base := range []string{benchDir, repo} {
			if _, err := os.Stat(filepath.Join(base, p)); err == nil {
				return true
			}
		}
		return false
	}
	inPieces, checked := false, 0
	pathLike := regexp.MustCompile(`^\.{0,2}/?[\w.-]+(/[\w.-]*)+$`)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## ") {
			inPieces = line == "## Pieces"
		}
		for i, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(line, -1) {
			p := m[1]
			// The Pieces table's first column is a path under bench/.
			piece := inPieces && i == 0 && strings.HasPrefix(line, "| `")
			first, _, _ := strings.Cut(strings.TrimPrefix(p, "./"), "/")
			if !piece && (!pathLike.MatchString(p) || strings.HasPrefix(p, "/") || first == "bin" || !exists(first)) {
				continue // not a path into the tree (e.g. a gRPC method)
			}
			checked++
			if !exists(p) {
				t.Errorf("bench/README.md names %q, which exists neither in bench/ nor in the repository root", p)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d paths; did the README's shape change?", checked)
	}
}

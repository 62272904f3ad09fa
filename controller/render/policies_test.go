package render

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPoliciesNotRenderedYet pins issue 14's first phase: examples/policies
// (one policy per kind, all valid and resolved into w.Policies) leave the
// rendered config exactly as without them. Rendering them is the next
// phase, which replaces this test with golden files per configurer.
func TestPoliciesNotRenderedYet(t *testing.T) {
	dir := examplesDir(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	without := buildExamples(t, files...)
	with := buildExamples(t, dir)
	if got := len(with.Policies.Policies()) - len(with.Policies.Defaults()); got != 8 {
		t.Fatalf("want the 8 example policies resolved, got %d", got)
	}
	a := snapshot(t, without, mustRender(t, without, Options{}))
	b := snapshot(t, with, mustRender(t, with, Options{}))
	if !bytes.Equal(a, b) {
		t.Fatalf("policies changed the rendered config before rendering supports them: %s", firstDiff(a, b))
	}
}

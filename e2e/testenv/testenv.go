// Package testenv decides what a test does when a prerequisite (root, Envoy,
// a client binary) is missing: under CI=true that is a failure, elsewhere a
// skip that names what is missing. It also holds the few helpers tests of
// several packages share (SyncBuffer).
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require fails (CI) or skips (elsewhere) the test when ok is false.
func Require(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("missing prerequisite under CI=true: %s", what)
	}
	t.Skipf("skipping: missing prerequisite: %s", what)
}

// RequireRoot needs uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "root (uid 0)")
}

// RepoRoot is the directory holding go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// EnvoyPath finds Envoy: $ENVOY_BIN, else the project-local install made by `make envoy`.
// It returns "" when there is none.
func EnvoyPath() string {
	if p := os.Getenv("ENVOY_BIN"); p != "" {
		return p
	}
	p := filepath.Join(RepoRoot(), ".tools", "envoy", "envoy", "_bin", "envoy")
	if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
		return p
	}
	return ""
}

// Envoy returns the Envoy binary or fails/skips the test.
func Envoy(t testing.TB) string {
	t.Helper()
	p := EnvoyPath()
	Require(t, p != "", "Envoy binary (run `make envoy` or set ENVOY_BIN)")
	return p
}

// Tool finds a client binary: the project-local .tools/bin first, then PATH.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(), ".tools", "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	lp, err := exec.LookPath(name)
	Require(t, err == nil, name+" on PATH or in .tools/bin (run `make tools`)")
	return lp
}

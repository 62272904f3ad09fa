// Package plugin holds only this test: the Envoy image Dockerfiles cannot be
// built here (no Docker), so their pinned versions are checked against
// go.mod and the Makefile instead.
package plugin

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/meshext/meshext/e2e/testenv"
)

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// one returns the single submatch of re in s, failing when it is absent.
func one(t *testing.T, what, s string, re *regexp.Regexp) string {
	t.Helper()
	m := re.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("%s: no match for %s", what, re)
	}
	return m[1]
}

// requireVersion reads "module version" from go.mod's require blocks.
func requireVersion(t *testing.T, gomod, module string) string {
	t.Helper()
	return one(t, "go.mod require "+module, gomod, regexp.MustCompile(`(?m)^\s*(?:require\s+)?`+regexp.QuoteMeta(module)+`\s+(v\S+)`))
}

func majorMinor(v string) string {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// versionAtLeast compares dotted numeric versions.
func versionAtLeast(t *testing.T, have, want string) bool {
	t.Helper()
	h, w := strings.Split(have, "."), strings.Split(want, ".")
	for i := 0; i < len(w); i++ {
		var hv int
		if i < len(h) {
			n, err := strconv.Atoi(h[i])
			if err != nil {
				t.Fatalf("bad version %q", have)
			}
			hv = n
		}
		wv, err := strconv.Atoi(w[i])
		if err != nil {
			t.Fatalf("bad version %q", want)
		}
		if hv != wv {
			return hv > wv
		}
	}
	return true
}

func TestDockerfilePins(t *testing.T) {
	gomod := read(t, "go.mod")
	makefile := read(t, "Makefile")
	goDirective := one(t, "go.mod go directive", gomod, regexp.MustCompile(`(?m)^go\s+(\S+)`))
	toolchain := ""
	if m := regexp.MustCompile(`(?m)^toolchain\s+go(\S+)`).FindStringSubmatch(gomod); m != nil {
		toolchain = m[1]
	}
	makeEnvoy := one(t, "Makefile ENVOY_VERSION", makefile, regexp.MustCompile(`(?m)^ENVOY_VERSION\s*\?=\s*(\S+)`))
	contribSDK := requireVersion(t, gomod, "github.com/envoyproxy/envoy")
	const dynModule = "github.com/envoyproxy/envoy/source/extensions/dynamic_modules"
	dynSDK := requireVersion(t, gomod, dynModule)

	images := []struct {
		file, from, tag, pkg, sdkLabel, lib string
	}{
		{"Dockerfile.envoy", "envoyproxy/envoy:contrib-v${ENVOY_VERSION}", "so", "./plugin/cmd/libmeshext-golang",
			`io.meshext.envoy-go-sdk="github.com/envoyproxy/envoy ` + contribSDK + `"`, "libmeshext-golang.so"},
		{"Dockerfile.envoy-stock", "envoyproxy/envoy:v${ENVOY_VERSION}", "dynmod", "./plugin/cmd/libmeshext",
			`io.meshext.dynamic-modules-sdk="` + dynModule + ` ` + dynSDK + `"`, "libmeshext.so"},
	}
	for _, img := range images {
		t.Run(img.file, func(t *testing.T) {
			df := read(t, img.file)
			goVersion := one(t, img.file+" GO_VERSION", df, regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)`))
			if majorMinor(goVersion) != majorMinor(goDirective) || !versionAtLeast(t, goVersion, goDirective) {
				t.Errorf("GO_VERSION %s does not satisfy go.mod's go %s (same minor, not older)", goVersion, goDirective)
			}
			if toolchain != "" && goVersion != toolchain {
				t.Errorf("GO_VERSION %s != go.mod toolchain go%s", goVersion, toolchain)
			}
			if !strings.Contains(df, "FROM golang:${GO_VERSION}-bookworm AS build") {
				t.Errorf("builder is not golang:${GO_VERSION}-bookworm (glibc 2.36, output checked against 2.35)")
			}
			envoyVersion := one(t, img.file+" ENVOY_VERSION", df, regexp.MustCompile(`(?m)^ARG ENVOY_VERSION=(\S+)`))
			if envoyVersion != makeEnvoy {
				t.Errorf("ENVOY_VERSION %s != Makefile ENVOY_VERSION %s", envoyVersion, makeEnvoy)
			}
			if !strings.Contains(df, "FROM "+img.from+"\n") {
				t.Errorf("runtime image is not %s", img.from)
			}
			if !strings.Contains(df, img.sdkLabel) {
				t.Errorf("SDK label %s missing or not matching go.mod", img.sdkLabel)
			}
			build := "-buildmode=c-shared -tags " + img.tag
			if !strings.Contains(df, build) || !strings.Contains(df, img.pkg) || !strings.Contains(makefile, build+" -o bin/"+img.lib+" "+img.pkg) {
				t.Errorf("Dockerfile and Makefile must build %s with %q from %s", img.lib, build, img.pkg)
			}
			if _, err := os.Stat(filepath.Join(testenv.RepoRoot(), img.pkg)); err != nil {
				t.Errorf("build package: %v", err)
			}
			if !strings.Contains(df, "GODEBUG=cgocheck=0") {
				t.Error("GODEBUG=cgocheck=0 not set")
			}
		})
	}
	// The contrib SDK must be the running Envoy's minor (the C ABI changes every minor).
	if majorMinor(contribSDK) != majorMinor(makeEnvoy) {
		t.Errorf("github.com/envoyproxy/envoy %s is not Envoy %s's minor", contribSDK, makeEnvoy)
	}
}

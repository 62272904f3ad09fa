package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runBootstrapTest(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := bootstrapMain(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestBootstrapCommandShapes(t *testing.T) {
	dir := t.TempDir()
	out, stderr, code := runBootstrapTest("--xds", "file", "--xds-dir", dir, "--node", "default.web", "--admin-port", "9911")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"path: " + filepath.Join(dir, "default.web", "cds.json"), "path: " + filepath.Join(dir, "default.web", "lds.json"), "id: default.web", "portValue: 9911"} {
		if !strings.Contains(out, want) {
			t.Errorf("file bootstrap lacks %q:\n%s", want, out)
		}
	}

	// TCP: mTLS with a client certificate issued from the state dir's xDS CA.
	path := filepath.Join(t.TempDir(), "boot.json")
	if _, stderr, code := runBootstrapTest("--xds", "ads", "--ads-address", "127.0.0.1:18000", "--delta", "--state-dir", t.TempDir(), "--out", path); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"apiType": "DELTA_GRPC"`, `"clusterName": "meshext_xds"`, `"ads": {}`,
		`"filename": "` + filepath.Join(filepath.Dir(path), "default-xds-client.key") + `"`, `"sanType": "IP_ADDRESS"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("ADS bootstrap (JSON by extension) lacks %s:\n%s", want, b)
		}
	}
	envoyValidateFile(t, path)
}

func TestBootstrapCommandErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--xds", "file"},
		{"--xds", "ads"},
		{"--xds", "ads", "--ads-address", "127.0.0.1:18000", "--xds-dir", "/tmp"},
		{"--xds", "pigeon"},
		{"--xds", "ads", "--ads-address", "127.0.0.1:18000", "--admin-port", "0"},
		{"--xds", "ads", "--ads-address", "127.0.0.1:18000", "extra"},
		// TCP needs the xDS CA (mTLS) or an explicit --ads-insecure.
		{"--xds", "ads", "--ads-address", "127.0.0.1:18000"},
		{"--xds", "ads", "--ads-address", "127.0.0.1:18000", "--state-dir", t.TempDir(), "--out", "-"},
		{"--xds", "ads", "--ads-address", "127.0.0.1:18000", "--state-dir", t.TempDir(), "--node", "a/b", "--cert-dir", t.TempDir()},
		{"--xds", "ads", "--ads-address", "unix:relative.sock"},
		{"--xds", "ads", "--ads-address", "unix:/run/ads.sock", "--ads-insecure"},
	} {
		if _, _, code := runBootstrapTest(args...); code != 2 {
			t.Errorf("args %q: exit %d, want 2", args, code)
		}
	}
	if _, _, code := runBootstrapTest("--help"); code != 0 {
		t.Errorf("--help exit %d", code)
	}
}

package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/xds"
)

// TestXDSDirMeshextDidNotWriteIsRefused: `meshext run` will not start on a
// non-empty --xds-dir without meshext's manifest, and changes nothing there.
func TestXDSDirMeshextDidNotWriteIsRefused(t *testing.T) {
	out := t.TempDir()
	theirs := filepath.Join(out, "default", "cds.json")
	if err := os.MkdirAll(filepath.Dir(theirs), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(theirs, []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Dir: t.TempDir(), XDS: XDSFile, XDSDir: out, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "is not empty and has no "+xds.ManifestFile) {
		t.Fatalf("New: %v", err)
	}
	if b, _ := os.ReadFile(theirs); string(b) != "theirs" {
		t.Fatalf("file changed: %q", b)
	}
}

func TestZoneFlagFollowsTheZoneLabelRule(t *testing.T) {
	_, err := New(Config{Dir: t.TempDir(), XDS: XDSADS, ADSListen: "127.0.0.1:0", Zone: "Zone_1"})
	if err == nil || !strings.Contains(err.Error(), `--zone "Zone_1": a lowercase RFC 1123 label`) {
		t.Fatalf("New: %v", err)
	}
}

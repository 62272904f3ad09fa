package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
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

// TestServingDataplaneKeepsItsNodeID: a Dataplane whose node id folds onto a
// serving one's ("a" + "b.c" vs "a.b" + "c") is refused across reloads, even
// when it sorts first and claims an older creation time; the serving
// Dataplane's Envoy keeps its own config.
func TestServingDataplaneKeepsItsNodeID(t *testing.T) {
	t.Parallel()
	dir, out := t.TempDir(), t.TempDir()
	mes := func(mesh, port string) string {
		return "type: MeshExternalService\nname: svc\nmesh: " + mesh + "\nspec: {match: {port: " + port + ", protocol: tcp}, endpoints: [{address: 127.0.0.1, port: 9000}]}\n"
	}
	dp := func(mesh, name, extra string) string {
		return "type: Dataplane\nname: " + name + "\nmesh: " + mesh + "\n" + extra + "networking: {address: 127.0.0.1}\n"
	}
	dropWrite(t, dir, "serving.yaml", mes("a.b", "80")+"---\n"+dp("a.b", "c", ""))
	r, _ := startRunner(t, Config{Dir: dir, XDS: XDSFile, XDSDir: out})
	cds := xds.CDSPath(out, "a.b.c")
	waitStatus(t, r, 5*time.Second, "node a.b.c", func(s *Status) bool {
		b, _ := os.ReadFile(cds)
		return strings.Contains(string(b), "a.b_svc__default_extsvc_80")
	})

	dropWrite(t, dir, "newcomer.yaml", mes("a", "81")+"---\n"+dp("a", "b.c", "creationTime: \"2001-01-01T00:00:00Z\"\n"))
	waitStatus(t, r, 5*time.Second, "newcomer refused", func(s *Status) bool {
		return hasProblem(s, `Dataplane a/b.c: name: Envoy node id "a.b.c" is already used by Dataplane a.b/c (`)
	})
	if c := readFile(t, cds); !strings.Contains(c, "a.b_svc__default_extsvc_80") || strings.Contains(c, "a_svc__default_extsvc_81") {
		t.Fatalf("node a.b.c no longer serves Dataplane a.b/c:\n%s", c)
	}
}

func TestZoneFlagFollowsTheZoneLabelRule(t *testing.T) {
	_, err := New(Config{Dir: t.TempDir(), XDS: XDSADS, ADSListen: "127.0.0.1:0", Zone: "Zone_1"})
	if err == nil || !strings.Contains(err.Error(), `--zone "Zone_1": a lowercase RFC 1123 label`) {
		t.Fatalf("New: %v", err)
	}
}

// TestRedirectTargetsNeverCrossMeshes: eBPF attachments are named by
// Dataplane. Two Dataplanes "web" in meshes a and b must not share one
// attachment (the later one's Envoy would get the other's workload, with
// its permissions); the node id names each, the plain name neither.
func TestRedirectTargetsNeverCrossMeshes(t *testing.T) {
	dp := func(mesh, name string, port int64) *resource.Dataplane {
		d := &resource.Dataplane{Meta: resource.Meta{Kind: resource.KindDataplane, Mesh: mesh, Name: name}}
		d.Networking.TransparentProxying = &resource.TransparentProxying{RedirectPortOutbound: port}
		return d
	}
	w := &model.World{Dataplanes: []*resource.Dataplane{dp("a", "web", 15001), dp("b", "web", 15002), dp("a", "db", 15003), dp("x", "a.db", 15004)}}
	got := redirectTargets(w)
	want := map[string]uint16{
		"a.web": 15001, "b.web": 15002, "web": ambiguousRedirect,
		"db":     15003,
		"a.db":   ambiguousRedirect, // a/db's node id, and x/a.db's name
		"x.a.db": 15004,
	}
	for name, port := range want {
		if got[name] != port {
			t.Errorf("%s -> %d, want %d (all: %v)", name, got[name], port, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("targets %v, want %v", got, want)
	}
}

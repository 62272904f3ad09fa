package xds

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

type traced struct {
	w   *FileWriter
	ops []string
}

func newTraced(t *testing.T) *traced {
	tr := &traced{w: &FileWriter{Dir: t.TempDir()}}
	tr.w.trace = func(op, path string) {
		rel, _ := filepath.Rel(tr.w.Dir, path)
		tr.ops = append(tr.ops, op+" "+rel)
	}
	return tr
}

func (tr *traced) write(t *testing.T, res *Resources) []string {
	t.Helper()
	tr.ops = nil
	if _, err := tr.w.Write(map[string]*Resources{"n1": res}); err != nil {
		t.Fatal(err)
	}
	return tr.ops
}

func TestFileWriterOrderAndSkips(t *testing.T) {
	tr := newTraced(t)
	ca := []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
	a := &Resources{
		Clusters:  []*clusterv3.Cluster{testCluster("a", 1)},
		Listeners: []*listenerv3.Listener{testListener("la", "a", "a")},
		Secrets:   []*tlsv3.Secret{caSecret("ca-a", ca)},
	}
	steps := []struct {
		name string
		res  *Resources
		want []string
	}{
		{"first write: secret, clusters, listeners", a,
			[]string{"write sds/ca-a.json", "write n1/cds.json", "write n1/lds.json"}},
		{"unchanged: nothing written", a, nil},
		{"cluster changed only", &Resources{
			Clusters: []*clusterv3.Cluster{testCluster("a", 2)}, Listeners: a.Listeners, Secrets: a.Secrets},
			[]string{"write n1/cds.json"}},
		{"cluster added with its listener: CDS before LDS", &Resources{
			Clusters:  []*clusterv3.Cluster{testCluster("a", 2), testCluster("b", 3)},
			Listeners: []*listenerv3.Listener{testListener("la", "a", "a"), testListener("lb", "b", "b")}, Secrets: a.Secrets},
			[]string{"write n1/cds.json", "write n1/lds.json"}},
		{"cluster removed with its listener: LDS before CDS, then the unused secret", &Resources{
			Clusters: []*clusterv3.Cluster{testCluster("b", 3)}, Listeners: []*listenerv3.Listener{testListener("lb", "b", "b")}},
			[]string{"write n1/lds.json", "write n1/cds.json", "remove sds/ca-a.json"}},
		{"replace: union CDS, LDS, final CDS", &Resources{
			Clusters: []*clusterv3.Cluster{testCluster("c", 4)}, Listeners: []*listenerv3.Listener{testListener("lc", "c", "c")}},
			[]string{"write n1/cds.json", "write n1/lds.json", "write n1/cds.json"}},
	}
	for _, s := range steps {
		if got := tr.write(t, s.res); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("%s: wrote %q, want %q", s.name, got, s.want)
		}
	}
	// The end state holds exactly the last resources.
	resp := readResponse(t, CDSPath(tr.w.Dir, "n1"))
	if len(resp.Resources) != 1 || !strings.Contains(resp.Resources[0].String(), "c") {
		t.Fatalf("final cds.json: %v", resp)
	}
	want, _ := versionOf([]*clusterv3.Cluster{testCluster("c", 4)})
	if resp.VersionInfo != want {
		t.Fatalf("version_info %q, want content version %q", resp.VersionInfo, want)
	}
}

func TestFileWriterModesAndNoTempLeftovers(t *testing.T) {
	w := &FileWriter{Dir: t.TempDir()}
	res := &Resources{
		Clusters: []*clusterv3.Cluster{testCluster("a", 1)},
		Secrets:  []*tlsv3.Secret{caSecret("ca/../x", []byte("pem"))},
	}
	if _, err := w.Write(map[string]*Resources{"mesh.dp/../1": res}); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{
		CDSPath(w.Dir, "mesh.dp/../1"): 0o644,
		LDSPath(w.Dir, "mesh.dp/../1"): 0o644,
		SecretPath(w.Dir, "ca/../x"):   0o600,
	} {
		if !strings.HasPrefix(path, w.Dir+"/") {
			t.Fatalf("%s escapes %s", path, w.Dir)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}
	err := filepath.Walk(w.Dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(filepath.Base(p), ".tmp-") {
			t.Errorf("temp file left behind: %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// An empty node still gets files: Envoy needs them to exist at start.
	if _, err := w.Write(map[string]*Resources{"empty": nil}); err != nil {
		t.Fatal(err)
	}
	if r := readResponse(t, LDSPath(w.Dir, "empty")); len(r.Resources) != 0 {
		t.Fatalf("empty node lds: %v", r)
	}
	// The node dropped from the map got empty CDS.
	if r := readResponse(t, CDSPath(w.Dir, "mesh.dp/../1")); len(r.Resources) != 0 {
		t.Fatalf("dropped node should have empty cds, got %d resources", len(r.Resources))
	}
}

func TestFileWriterRejectsDuplicates(t *testing.T) {
	w := &FileWriter{Dir: t.TempDir()}
	_, err := w.Write(map[string]*Resources{"n": {Clusters: []*clusterv3.Cluster{testCluster("a", 1), testCluster("a", 2)}}})
	if err == nil || !strings.Contains(err.Error(), `duplicate cluster "a"`) {
		t.Fatalf("got %v", err)
	}
}

func readResponse(t *testing.T, path string) *discoveryv3.DiscoveryResponse {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r discoveryv3.DiscoveryResponse
	if err := protojson.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &r
}

func TestFileWriterSecretsSharedAcrossNodes(t *testing.T) {
	w := &FileWriter{Dir: t.TempDir()}
	same := map[string]*Resources{
		"n1": {Secrets: []*tlsv3.Secret{caSecret("ca", []byte("one"))}},
		"n2": {Secrets: []*tlsv3.Secret{caSecret("ca", []byte("one"))}},
	}
	st, err := w.Write(same)
	if err != nil {
		t.Fatal(err)
	}
	// One secret file, plus cds+lds for each node.
	if st.FilesWritten != 5 {
		t.Fatalf("wrote %d files, want 5", st.FilesWritten)
	}
	clash := map[string]*Resources{
		"n1": {Secrets: []*tlsv3.Secret{caSecret("ca", []byte("one"))}},
		"n2": {Secrets: []*tlsv3.Secret{caSecret("ca", []byte("two"))}},
	}
	if _, err := w.Write(clash); err == nil || !strings.Contains(err.Error(), `secret "ca" differs`) {
		t.Fatalf("conflicting secrets: got %v", err)
	}
}

func TestFileWriterAdoptsPreviousRun(t *testing.T) {
	dir := t.TempDir()
	old := &FileWriter{Dir: dir}
	if _, err := old.Write(map[string]*Resources{
		"gone": {Clusters: []*clusterv3.Cluster{testCluster("a", 1)}, Secrets: []*tlsv3.Secret{caSecret("old", []byte("x"))}},
		"kept": {Clusters: []*clusterv3.Cluster{testCluster("b", 1)}, Secrets: []*tlsv3.Secret{caSecret("shared", []byte("y"))}},
	}); err != nil {
		t.Fatal(err)
	}
	crash := filepath.Join(NodeDir(dir, "kept"), ".cds.json.tmp-123")
	if err := os.WriteFile(crash, []byte("torn"), 0o644); err != nil {
		t.Fatal(err)
	}

	// A new process (fresh writer) no longer renders node "gone" nor secret "old".
	w := &FileWriter{Dir: dir}
	var ops []string
	w.trace = func(op, path string) {
		rel, _ := filepath.Rel(dir, path)
		ops = append(ops, op+" "+rel)
	}
	if _, err := w.Write(map[string]*Resources{
		"kept": {Clusters: []*clusterv3.Cluster{testCluster("b", 1)}, Secrets: []*tlsv3.Secret{caSecret("shared", []byte("y"))}},
	}); err != nil {
		t.Fatal(err)
	}
	// The old cds.json is read back, so emptying "gone" removes listeners first.
	if i, j := indexOf(ops, "write gone/lds.json"), indexOf(ops, "write gone/cds.json"); i < 0 || j < 0 || i > j {
		t.Errorf("stale node not emptied LDS-first: %q", ops)
	}
	if r := readResponse(t, CDSPath(dir, "gone")); len(r.Resources) != 0 {
		t.Errorf("stale node keeps %d clusters", len(r.Resources))
	}
	if r := readResponse(t, CDSPath(dir, "kept")); len(r.Resources) != 1 {
		t.Errorf("live node has %d clusters", len(r.Resources))
	}
	if _, err := os.Stat(SecretPath(dir, "old")); !os.IsNotExist(err) {
		t.Errorf("unused secret from the previous run still there: %v", err)
	}
	if _, err := os.Stat(SecretPath(dir, "shared")); err != nil {
		t.Errorf("used secret removed: %v", err)
	}
	if _, err := os.Stat(crash); !os.IsNotExist(err) {
		t.Errorf("crash leftover temp file not removed")
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// snapshot reads every file under dir (path -> content) except the manifest.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || filepath.Base(p) == ManifestFile {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func oneNode(node string) map[string]*Resources {
	return map[string]*Resources{node: {Clusters: []*clusterv3.Cluster{testCluster("a", 1)}, Secrets: []*tlsv3.Secret{caSecret("ca", []byte("pem"))}}}
}

// TestFileWriterRefusesForeignDirectory: a non-empty --xds-dir that meshext
// did not write (no manifest) is refused before anything is written, and
// what is there stays byte for byte, even files shaped like meshext's own.
func TestFileWriterRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	theirs := map[string]string{"default/cds.json": "not ours", "sds/key.json": "secret", "notes.txt": "keep"}
	writeFiles(t, dir, theirs)
	w := &FileWriter{Dir: dir}
	err := w.Open()
	if err == nil || !strings.Contains(err.Error(), "is not empty and has no "+ManifestFile) {
		t.Fatalf("Open: got %v", err)
	}
	if _, err := w.Write(oneNode("default")); err == nil {
		t.Fatal("Write into a foreign directory succeeded")
	}
	if got := snapshot(t, dir); !reflect.DeepEqual(got, theirs) {
		t.Fatalf("foreign directory changed: %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); !os.IsNotExist(err) {
		t.Fatalf("manifest written into a foreign directory: %v", err)
	}
}

// TestFileWriterLeavesUnlistedFilesAlone: in a directory meshext owns, files
// it did not write (added later by someone else) are never emptied or
// removed, even when they look like a stale node or an unused secret; and a
// path meshext wants that someone else holds refuses the write, untouched.
func TestFileWriterLeavesUnlistedFilesAlone(t *testing.T) {
	dir := t.TempDir()
	w := &FileWriter{Dir: dir}
	if _, err := w.Write(oneNode("n1")); err != nil {
		t.Fatal(err)
	}
	theirs := map[string]string{"other/cds.json": "theirs", "other/lds.json": "theirs", "sds/user.json": "theirs",
		"n1/extra.txt": "theirs", ".hidden.json.tmp-1": "theirs", "n1/.x.json.tmp-2": "theirs"}
	writeFiles(t, dir, theirs)
	// A new process adopts the directory, drops n1, adds n2.
	w = &FileWriter{Dir: dir}
	if _, err := w.Write(map[string]*Resources{"n2": {}}); err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, dir)
	for rel, content := range theirs {
		if got[rel] != content {
			t.Errorf("%s: %q, want %q untouched", rel, got[rel], content)
		}
	}
	if r := readResponse(t, CDSPath(dir, "n1")); len(r.Resources) != 0 {
		t.Errorf("meshext's own stale node n1 not emptied")
	}
	if _, err := os.Stat(SecretPath(dir, "ca")); !os.IsNotExist(err) {
		t.Errorf("meshext's own unused secret not removed: %v", err)
	}

	// Someone else's file where meshext would write: refused, nothing changes.
	writeFiles(t, dir, map[string]string{"n3/cds.json": "theirs"})
	before := snapshot(t, dir)
	_, err := w.Write(map[string]*Resources{"n2": {Clusters: []*clusterv3.Cluster{testCluster("b", 1)}}, "n3": {}})
	if err == nil || !strings.Contains(err.Error(), "was not written by meshext") {
		t.Fatalf("got %v", err)
	}
	if after := snapshot(t, dir); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused write changed files")
	}
}

// TestFileWriterNamesNeverFold: the node ids and secret names issue 12 saw
// sharing one file now get their own, and none leaves the directory.
func TestFileWriterNamesNeverFold(t *testing.T) {
	dir := t.TempDir()
	w := &FileWriter{Dir: dir}
	nodes := map[string]*Resources{}
	for i, n := range []string{"web/1", "web_1", "a/b_c", "a_b/c", "sds", "..", ".hidden"} {
		nodes[n] = &Resources{Clusters: []*clusterv3.Cluster{testCluster("c", uint32(i+1))}}
	}
	nodes["web/1"].Secrets = []*tlsv3.Secret{caSecret("bank/api", []byte("one"))}
	nodes["web_1"].Secrets = []*tlsv3.Secret{caSecret("bank_api", []byte("two"))}
	if _, err := w.Write(nodes); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{}
	for n := range nodes {
		d := NodeDir(dir, n)
		if filepath.Dir(d) != dir || d == SecretDir(dir) || strings.HasPrefix(filepath.Base(d), ".") {
			t.Errorf("node %q: directory %s is not its own element of %s", n, d, dir)
		}
		if other, dup := dirs[d]; dup {
			t.Errorf("nodes %q and %q share %s", other, n, d)
		}
		dirs[d] = n
		if r := readResponse(t, CDSPath(dir, n)); len(r.Resources) != 1 || r.VersionInfo != mustVersion(t, nodes[n].Clusters) {
			t.Errorf("node %q reads another node's clusters", n)
		}
	}
	if SecretPath(dir, "bank/api") == SecretPath(dir, "bank_api") {
		t.Fatal("secrets share a file")
	}
}

func mustVersion(t *testing.T, cs []*clusterv3.Cluster) string {
	t.Helper()
	v, err := versionOf(cs)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOutDirRefusesTamperedManifestAndSymlinks(t *testing.T) {
	for name, entry := range map[string]string{"parent": "../x", "absolute": "/etc/passwd", "unclean": "a/../b", "manifest": ManifestFile} {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{ManifestFile: `{"meshext": 1, "files": ["` + entry + `"]}`})
		if _, err := OpenOutDir(dir); err == nil || !strings.Contains(err.Error(), "not a plain relative path") {
			t.Errorf("%s: manifest entry %q: got %v", name, entry, err)
		}
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{ManifestFile: "garbage"})
	if _, err := OpenOutDir(dir); err == nil || !strings.Contains(err.Error(), "not a meshext manifest") {
		t.Errorf("garbage manifest: got %v", err)
	}

	// A symlinked node directory someone planted is not written through.
	dir = t.TempDir()
	w := &FileWriter{Dir: dir}
	if _, err := w.Write(map[string]*Resources{"n1": {}}); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := os.Symlink(target, NodeDir(dir, "n2")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(map[string]*Resources{"n1": {}, "n2": {}}); err == nil || !strings.Contains(err.Error(), "not a directory meshext created") {
		t.Fatalf("got %v", err)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Fatalf("wrote through a symlink: %v", ents)
	}
}

// A listener with many filter chains is written chain by chain; the file
// must read back as the same listeners, with and without other fields
// beside the chains, alone and between small listeners, with more chains
// than one chunk.
func TestLargeListenerJSONReadsBackEqual(t *testing.T) {
	for _, named := range []bool{true, false} {
		l := &listenerv3.Listener{}
		if named {
			l.Name, l.StatPrefix = "outbound:transparent", "outbound"
		}
		for i := 0; i < splitChains+3; i++ {
			l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{Name: "chain-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)),
				Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy"}}})
		}
		for _, items := range [][]proto.Message{{l}, {testListener("a", "c", "a"), l, testListener("b", "c", "b")}} {
			var buf strings.Builder
			if err := writeDiscoveryJSON(&buf, "v1", "type.googleapis.com/envoy.config.listener.v3.Listener", items, nil); err != nil {
				t.Fatal(err)
			}
			var dr discoveryv3.DiscoveryResponse
			if err := protojson.Unmarshal([]byte(buf.String()), &dr); err != nil {
				t.Fatalf("named=%v: %v", named, err)
			}
			if len(dr.Resources) != len(items) {
				t.Fatalf("named=%v: %d resources, want %d", named, len(dr.Resources), len(items))
			}
			for i, want := range items {
				var got listenerv3.Listener
				if err := dr.Resources[i].UnmarshalTo(&got); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(&got, want) {
					t.Errorf("named=%v: listener %d of %d read back differs", named, i, len(items))
				}
			}
		}
	}
}

// In FormatProto every file is binary protobuf with a .pb name, in the same
// order, reading back as the same resources; a later JSON writer on the
// same directory removes the .pb files it does not write.
func TestFileWriterProtoFormat(t *testing.T) {
	dir := t.TempDir()
	ca := []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
	res := &Resources{
		Clusters:  []*clusterv3.Cluster{testCluster("a", 1)},
		Listeners: []*listenerv3.Listener{testListener("la", "a", "a")},
		Secrets:   []*tlsv3.Secret{caSecret("ca-a", ca)},
	}
	tr := &traced{w: &FileWriter{Dir: dir, Format: FormatProto}}
	tr.w.trace = func(op, path string) {
		rel, _ := filepath.Rel(dir, path)
		tr.ops = append(tr.ops, op+" "+rel)
	}
	if got, want := tr.write(t, res), []string{"write sds/ca-a.pb", "write n1/cds.pb", "write n1/lds.pb"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("wrote %q, want %q", got, want)
	}
	read := func(path string) *discoveryv3.DiscoveryResponse {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var dr discoveryv3.DiscoveryResponse
		if err := proto.Unmarshal(b, &dr); err != nil {
			t.Fatalf("%s is not a binary DiscoveryResponse: %v", path, err)
		}
		return &dr
	}
	cds := read(FormatProto.CDSPath(dir, "n1"))
	var c clusterv3.Cluster
	if len(cds.Resources) != 1 || cds.Resources[0].UnmarshalTo(&c) != nil || !proto.Equal(&c, res.Clusters[0]) {
		t.Fatalf("cds.pb does not hold the cluster: %v", cds)
	}
	if want, _ := versionOf(res.Clusters); cds.VersionInfo != want {
		t.Errorf("version_info %q, want %q", cds.VersionInfo, want)
	}
	var l listenerv3.Listener
	if lds := read(FormatProto.LDSPath(dir, "n1")); len(lds.Resources) != 1 || lds.Resources[0].UnmarshalTo(&l) != nil || !proto.Equal(&l, res.Listeners[0]) {
		t.Fatalf("lds.pb does not hold the listener: %v", lds)
	}
	var s tlsv3.Secret
	if sds := read(FormatProto.SecretFile(SecretDir(dir), "ca-a")); len(sds.Resources) != 1 || sds.Resources[0].UnmarshalTo(&s) != nil || !proto.Equal(&s, res.Secrets[0]) {
		t.Fatalf("secret file does not hold the secret: %v", sds)
	}
	if st, err := os.Stat(FormatProto.SecretFile(SecretDir(dir), "ca-a")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	// Unchanged: nothing written.
	if got := tr.write(t, res); len(got) != 0 {
		t.Errorf("unchanged resources rewrote %q", got)
	}

	// A fresh JSON writer takes the directory over: .json files appear,
	// the .pb ones go.
	j := &FileWriter{Dir: dir}
	if _, err := j.Write(map[string]*Resources{"n1": res}); err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, dir)
	for _, rel := range []string{"n1/cds.json", "n1/lds.json", "sds/ca-a.json"} {
		if _, ok := got[rel]; !ok {
			t.Errorf("after switching to JSON, %s missing", rel)
		}
	}
	for rel := range got {
		if strings.HasSuffix(rel, ".pb") {
			t.Errorf("after switching to JSON, %s still there", rel)
		}
	}
}

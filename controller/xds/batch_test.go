package xds

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// claimedDir is an OutDir with files a/f0..f{n-1} holding "old-i".
func claimedDir(t *testing.T, n int) (*OutDir, []string) {
	t.Helper()
	d, err := OpenOutDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	for i := range n {
		rels = append(rels, fmt.Sprintf("a/f%d", i))
	}
	if err := d.Claim(0o700, rels...); err != nil {
		t.Fatal(err)
	}
	for i, rel := range rels {
		if err := d.WriteFile(rel, []byte(fmt.Sprintf("old-%d", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return d, rels
}

func content(t *testing.T, d *OutDir, rel string) string {
	t.Helper()
	b, err := os.ReadFile(d.Path(rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func temps(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(filepath.Base(p), ".tmp-") {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A batch interrupted before Commit (a crash) changes no file; the next
// process that opens the directory removes its temps.
func TestBatchCrashBeforeCommitKeepsOldContent(t *testing.T) {
	d, rels := claimedDir(t, 3)
	b := d.NewBatch()
	for i, rel := range rels {
		if err := b.Add(rel, []byte(fmt.Sprintf("new-%d", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i, rel := range rels {
		if got := content(t, d, rel); got != fmt.Sprintf("old-%d", i) {
			t.Fatalf("%s before Commit: %q", rel, got)
		}
	}
	if n := len(temps(t, d.Root())); n != 3 {
		t.Fatalf("%d temp files before Commit, want 3", n)
	}
	// The process dies here; a new one opens the directory.
	d2, err := OpenOutDir(d.Root())
	if err != nil {
		t.Fatal(err)
	}
	if left := temps(t, d2.Root()); len(left) != 0 {
		t.Fatalf("temps left after reopening: %v", left)
	}
	for i, rel := range rels {
		if got := content(t, d2, rel); got != fmt.Sprintf("old-%d", i) {
			t.Fatalf("%s after crash: %q", rel, got)
		}
	}
}

// Commit replaces every file in order, keeps the mode set at Add, leaves no
// temp, and Abort after it is a no-op.
func TestBatchCommitOrderAndModes(t *testing.T) {
	d, rels := claimedDir(t, 4)
	b := d.NewBatch()
	for i, rel := range rels {
		if err := b.Add(rel, []byte(fmt.Sprintf("new-%d", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	if err := b.Commit(func(rel string) { order = append(order, rel) }); err != nil {
		t.Fatal(err)
	}
	b.Abort()
	if fmt.Sprint(order) != fmt.Sprint(rels) {
		t.Fatalf("renamed %v, want %v", order, rels)
	}
	for i, rel := range rels {
		if got := content(t, d, rel); got != fmt.Sprintf("new-%d", i) {
			t.Fatalf("%s: %q", rel, got)
		}
		st, err := os.Stat(d.Path(rel))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v", rel, st.Mode().Perm())
		}
	}
	if left := temps(t, d.Root()); len(left) != 0 {
		t.Fatalf("temps left: %v", left)
	}
}

// A rename that fails part-way leaves the files before it new, the ones
// after it old, and no temp behind.
func TestBatchCommitFailureLeavesEachFileOldOrNew(t *testing.T) {
	d, rels := claimedDir(t, 3)
	b := d.NewBatch()
	for i, rel := range rels {
		if err := b.Add(rel, []byte(fmt.Sprintf("new-%d", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The second target becomes a non-empty directory: rename onto it fails.
	mid := d.Path(rels[1])
	if err := os.Remove(mid); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(mid, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(nil); err == nil {
		t.Fatal("Commit onto a non-empty directory succeeded")
	}
	if got := content(t, d, rels[0]); got != "new-0" {
		t.Fatalf("first file: %q", got)
	}
	if got := content(t, d, rels[2]); got != "old-2" {
		t.Fatalf("third file: %q", got)
	}
	if left := temps(t, d.Root()); len(left) != 0 {
		t.Fatalf("temps left: %v", left)
	}
}

// A reader polling a file while batches replace it sees whole old or whole
// new contents only, never a torn or empty file.
func TestBatchReaderSeesOldOrNew(t *testing.T) {
	d, _ := claimedDir(t, 0)
	const rel = "a/big"
	if err := d.Claim(0o700, rel); err != nil {
		t.Fatal(err)
	}
	versions := make([][]byte, 20)
	for i := range versions {
		versions[i] = bytes.Repeat([]byte{byte('a' + i)}, 1<<20)
	}
	if err := d.WriteFile(rel, versions[0], 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(d.Path(rel))
			if err != nil {
				bad = append(bad, err.Error())
				return
			}
			if len(b) != 1<<20 || bytes.Count(b, b[:1]) != len(b) {
				bad = append(bad, fmt.Sprintf("torn read: %d bytes starting %q", len(b), b[:min(len(b), 1)]))
				return
			}
		}
	}()
	for _, v := range versions[1:] {
		b := d.NewBatch()
		if err := b.Add(rel, v, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(nil); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	if got := content(t, d, rel); got != string(versions[len(versions)-1]) {
		t.Fatalf("final content starts %q", got[:1])
	}
}

// A Write that fails while staging (the secret directory replaced by a
// file, so no temp can be created there) renames nothing: every file keeps
// its content, and the next Write succeeds once the cause is gone.
func TestFileWriterStagingFailureChangesNothing(t *testing.T) {
	w := &FileWriter{Dir: t.TempDir()}
	res := func(port uint32, pem string) map[string]*Resources {
		return map[string]*Resources{"n1": {
			Clusters: []*clusterv3.Cluster{testCluster("a", port)},
			Secrets:  []*tlsv3.Secret{caSecret("ca", []byte(pem))},
		}}
	}
	if _, err := w.Write(res(1, "pem1")); err != nil {
		t.Fatal(err)
	}
	cds, _ := os.ReadFile(CDSPath(w.Dir, "n1"))
	sds, _ := os.ReadFile(SecretPath(w.Dir, "ca"))
	keep := SecretDir(w.Dir) + ".keep"
	if err := os.Rename(SecretDir(w.Dir), keep); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(SecretDir(w.Dir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(res(2, "pem2")); err == nil {
		t.Fatal("Write with its secret directory replaced by a file succeeded")
	}
	if b, _ := os.ReadFile(CDSPath(w.Dir, "n1")); !bytes.Equal(b, cds) {
		t.Fatal("cds.json changed although the write failed")
	}
	if left := temps(t, w.Dir); len(left) != 0 {
		t.Fatalf("temps left: %v", left)
	}
	if err := os.Remove(SecretDir(w.Dir)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(keep, SecretDir(w.Dir)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(SecretPath(w.Dir, "ca")); !bytes.Equal(b, sds) {
		t.Fatal("secret changed although the write failed")
	}
	if _, err := w.Write(res(2, "pem2")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(SecretPath(w.Dir, "ca")); bytes.Equal(b, sds) || !bytes.Contains(b, []byte("cGVtMg")) {
		t.Fatalf("secret not rewritten: %s", b)
	}
	if b, _ := os.ReadFile(CDSPath(w.Dir, "n1")); bytes.Equal(b, cds) {
		t.Fatal("cds.json not rewritten")
	}
}

// The streamed DiscoveryResponse JSON reads back as the message built with
// Anys, with no resources, an empty resource and several.
func TestWriteDiscoveryJSONMatchesAnyPacking(t *testing.T) {
	for _, items := range [][]proto.Message{
		nil,
		{&clusterv3.Cluster{}},
		{testCluster("a", 1), &clusterv3.Cluster{}, testCluster("b\"\\ü", 2)},
		{caSecret("ca", []byte("pem"))},
	} {
		for _, version := range []string{"", "v1"} {
			var buf bytes.Buffer
			if err := writeDiscoveryJSON(&buf, version, resourcev3.ClusterType, items, nil); err != nil {
				t.Fatal(err)
			}
			var got discoveryv3.DiscoveryResponse
			if err := protojson.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("%d items, version %q: %v\n%s", len(items), version, err, buf.Bytes())
			}
			want := &discoveryv3.DiscoveryResponse{VersionInfo: version, TypeUrl: resourcev3.ClusterType}
			for _, it := range items {
				a, err := anypb.New(it)
				if err != nil {
					t.Fatal(err)
				}
				want.Resources = append(want.Resources, a)
			}
			if !proto.Equal(&got, want) {
				t.Fatalf("%d items, version %q: got %v, want %v", len(items), version, &got, want)
			}
		}
	}
}

// CommitBatches renames batch after batch, each in its order, and says which
// batch each file came from; one file may be replaced twice (make before
// break) and ends with the later content.
func TestCommitBatchesOrder(t *testing.T) {
	d, rels := claimedDir(t, 3)
	b0, b1 := d.NewBatch(), d.NewBatch()
	for _, add := range []struct {
		b    *Batch
		rel  string
		data string
	}{{b1, rels[1], "b1-1"}, {b0, rels[0], "b0-0"}, {b1, rels[0], "b1-0"}, {b0, rels[2], "b0-2"}} {
		if err := add.b.Add(add.rel, []byte(add.data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	err := CommitBatches(func(i int, rel string) { order = append(order, fmt.Sprintf("%d:%s", i, rel)) }, b0, b1)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0:" + rels[0], "0:" + rels[2], "1:" + rels[1], "1:" + rels[0]}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("renamed %v, want %v", order, want)
	}
	for rel, want := range map[string]string{rels[0]: "b1-0", rels[1]: "b1-1", rels[2]: "b0-2"} {
		if got := content(t, d, rel); got != want {
			t.Errorf("%s: %q, want %q", rel, got, want)
		}
	}
	if left := temps(t, d.Root()); len(left) != 0 {
		t.Fatalf("temps left: %v", left)
	}
}

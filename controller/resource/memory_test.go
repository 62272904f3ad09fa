package resource

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// largeInput writes a file of at least size bytes of small
// MeshExternalServices, the densest shape (most resources per byte), and
// returns its path.
func largeInput(t testing.TB, size int) string {
	t.Helper()
	var b strings.Builder
	b.Grow(size + 512)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "---\ntype: MeshExternalService\nname: mes-%d\nmesh: default\nspec:\n  match:\n    port: 80\n    protocol: tcp\n"+
			"  endpoints:\n  - address: 127.0.0.1\n    port: 9000\n", i)
	}
	path := filepath.Join(t.TempDir(), "large.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// heapPeak samples the heap in use while f runs; the result is a lower
// bound of the true peak, good enough to see a multiple of the input.
func heapPeak(f func()) (peak uint64) {
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	return peak
}

// loadMemory loads path and returns the input size, the heap that stays
// live with the loaded set, and the sampled heap peak while loading.
func loadMemory(t testing.TB, path string) (size int64, live, peak uint64, set *Set) {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	peak = heapPeak(func() {
		var errs []*FieldError
		set, errs, err = Load([]string{path}, Options{MaxFileSize: st.Size()})
		if err != nil || len(errs) > 0 {
			t.Fatalf("load: %v %v", err, errs)
		}
	})
	runtime.GC()
	runtime.ReadMemStats(&after)
	return st.Size(), after.HeapAlloc - before.HeapAlloc, peak - before.HeapInuse, set
}

// TestLoadMemoryIsSmallMultipleOfInput loads 4 MiB of the densest input:
// the live heap afterwards is a small multiple of the input (YAML node
// trees, about 40 times the text, are not kept), and errors still get their
// lines from the document text. A file over the limit is refused.
func TestLoadMemoryIsSmallMultipleOfInput(t *testing.T) {
	path := largeInput(t, 4<<20)
	size, live, peak, set := loadMemory(t, path)
	t.Logf("input %.1f MiB, %d resources: live %.1fx, sampled peak %.1fx the input",
		float64(size)/(1<<20), len(set.MeshExternalServices), float64(live)/float64(size), float64(peak)/float64(size))
	if live > 8*uint64(size) {
		t.Errorf("live heap %d MiB is over 8x the %d MiB input", live>>20, size>>20)
	}
	// A line asked for after loading comes from the document's text.
	last := set.MeshExternalServices[len(set.MeshExternalServices)-1]
	if got, want := last.LineOf("spec.endpoints[0].port"), last.Source.Line+9; got != want {
		t.Errorf("line of the last resource's endpoint port = %d, want %d", got, want)
	}
	runtime.KeepAlive(set)

	_, errs, err := Load([]string{path}, Options{MaxFileSize: 1 << 20})
	if err != nil || len(errs) != 1 || !strings.Contains(errs[0].Error(), "cannot read: file too large: ") ||
		!strings.HasSuffix(errs[0].Error(), "over the 1MiB limit (--max-file-size)") {
		t.Fatalf("a file over the limit: %v %v", err, errs)
	}
}

// BenchmarkLoadLarge loads a 50 MB file of small MeshExternalServices (the
// size in the hardening report) and reports the live heap after loading and
// the sampled heap peak while loading, as multiples of the input size.
func BenchmarkLoadLarge(b *testing.B) {
	path := largeInput(b, 50<<20)
	b.ResetTimer()
	for b.Loop() {
		size, live, peak, set := loadMemory(b, path)
		b.ReportMetric(float64(size)/(1<<20), "input-MiB")
		b.ReportMetric(float64(live)/float64(size), "live-x")
		b.ReportMetric(float64(peak)/float64(size), "peak-x")
		runtime.KeepAlive(set)
	}
}

// TestLazyLinesMatchTheFile checks that lines rebuilt from a document's text
// are the file's lines, whatever line breaks and document markers the file
// uses (the YAML reader also breaks lines at CR, NEL, LS and PS).
func TestLazyLinesMatchTheFile(t *testing.T) {
	docs := []string{
		"# leading comment\ntype: MeshExternalService\nname: a\nspec:\n  match:\n    port: 80\n  endpoints:\n  - address: 1.1.1.1\n    port: 80\n",
		"--- # explicit\ntype: MeshExternalService\r\nname: b\r\nspec:\r\n  match:\r\n    port: 80\r\n  endpoints:\r\n  - address: 1.1.1.1\r\n    port: 80\r\n",
		"---\n\n...\n---\ntype: MeshExternalService\rname: c\rspec:\r  match:\r    port: 80\r  endpoints:\r  - address: 1.1.1.1\r    port: 80\r",
		"---\n# x\u0085type: MeshExternalService\u2028name: d\u2029spec: {match: {port: 80},\n  endpoints: [{address: 1.1.1.1,\n    port: 80}]}\n...\n",
	}
	data := []byte(strings.Join(docs, ""))
	objs, errs := ParseBytes("f.yaml", data)
	if len(errs) > 0 || len(objs) != 4 {
		t.Fatalf("parse: %d objects, %v", len(objs), errs)
	}
	// The reference: the whole file parsed at once, trees kept.
	var roots []*yaml.Node
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	for {
		doc := new(yaml.Node)
		if dec.Decode(doc) != nil {
			break
		}
		if len(doc.Content) > 0 && doc.Content[0].Tag != "!!null" {
			roots = append(roots, doc)
		}
	}
	for i, o := range objs {
		lazy := o.GetMeta()
		if lazy.src == nil {
			t.Fatalf("%s keeps no document text", lazy.Name)
		}
		eager := *lazy
		eager.root = roots[i]
		for _, f := range []string{"name", "spec", "spec.match.port", "spec.endpoints[0]", "spec.endpoints[0].port", "spec.tls"} {
			if got, want := lazy.LineOf(f), eager.LineOf(f); got != want {
				t.Errorf("%s: line of %s = %d, want %d", lazy.Name, f, got, want)
			}
		}
	}
}

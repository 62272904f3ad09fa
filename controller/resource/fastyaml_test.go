package resource

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/meshext/meshext/bench/workload"
)

// fastCases are inputs fastYAML must read itself (and like the decoder).
var fastCases = []string{
	"a: b\n",
	"a: b",
	"---\na: b\n",
	"a: 1\n---\nb: true\n---\nc: 1.5\n",
	"\n\n  \na: b\n\n---\n\nc: d\n\n",
	"a:\n  b: c\n  d:\n  - e\n  - f: g\n    h: 'i j'\n  - \"k\"\nl: m\n",
	"a:\n- x: 1\n  y:\n  - z\n  w: 2\n- v\nb: null\n",
	"", "\n",
	"a:\n    b:\n        c: x\n    d: -1\n",
	"a: b   \nc:   d e  f  \n",
	"a: 1e3\nb: 0x1F\nc: .inf\nd: 01\ne: yes\nf: True\ng: -.5\nh: +1\ni: 1_000\nj: 2001-12-14\nk: ''\nl: \"\"\n",
	"true: 1\n1: 2\nnull: 3\n",
	"a: x:y\nb: http://x/y?z=1&w=2\nc: a,b[c]{d}\nd: it's\ne: a \"q\" b\n",
	"a: .x\nb: /x\nc: _x\nd: -a\n",
	"a:\n  -   b: 1\n      c: 2\n",
	"spec:\n  match:\n    port: 80\n  endpoints:\n  - address: a\n    port: 80\n",
	deepYAML(99), strings.Repeat("a", 1000) + ": b\n",
}

// slowCases are inputs fastYAML leaves to the decoder.
var slowCases = []string{
	"-x: 1\n", "a: ~\n", "---\n", "a: b\n---\n", "a: b\n---\n---\nc: d\n", "# c\na: b\n", "a: b # c\n", "a: b\n...\n",
	"a:\n", "a:\nb: c\n", "a: b\n  c\n", "a:\tb\n", "a: b\r\n", "a: é\n", "\ufeffa: b\n",
	"a: {b: c}\n", "a: [b]\n", "a: &x b\nc: *x\n", "a: !!str 1\n", "a: |\n  x\n", "a: >\n  x\n",
	"a: 'x\n  y'\n", "a: \"x\\ny\"\n", "a: 'it''s'\n", "a: b: c\n", "a: b:\n", "- a\n", "  a: b\n",
	"a:\n  - b\n c: d\n", "a:\n    b: 1\n  c: 2\n", "a: 1\n- b\n", "a:\n- - b\n", "a:\n-\n  b: c\n", "a:\n- \n",
	"a:\n-b\n", "? a\n: b\n", "\"a\": b\n", "a :b\n", "%YAML 1.2\n---\na: b\n", "--- a: b\n", "---  \na: b\n",
	"a: b\n  ---\n", "a: @b\n", "a: `b\n", "a: 'x' y\n", "a: -\n", "<<: x\n", "a:\n  - b\n    c: d\n",
	"a: x\n---\n- y\n", "a: b\x00c\n", "a: b\x7f\n", "a: b\u2028c: d\n", "a: x\n---\n  b: y\n",
	deepYAML(101), strings.Repeat("a", 1025) + ": b\n",
}

// deepYAML is a document of mappings nested depth deep.
func deepYAML(depth int) string {
	var b strings.Builder
	for i := 0; i < depth; i++ {
		b.WriteString(strings.Repeat(" ", i) + "a:\n")
	}
	b.WriteString(strings.Repeat(" ", depth) + "b: c\n")
	return b.String()
}

func TestFastYAMLReadsItsSubsetLikeTheDecoder(t *testing.T) {
	for _, c := range fastCases {
		if !compareFast(t, []byte(c)) {
			t.Errorf("%q: fastYAML gave up", c)
		}
	}
	for _, c := range slowCases {
		if compareFast(t, []byte(c)) {
			t.Errorf("%q: fastYAML read it", c)
		}
	}
}

// TestFastYAMLOnEveryInput checks fastYAML and ParseBytes on every YAML
// file of the repository, the fuzz corpora and the benchmark's documents:
// where fastYAML reads a file, the trees, resources and problems are those
// of the decoder.
func TestFastYAMLOnEveryInput(t *testing.T) {
	inputs := map[string][]byte{}
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		if IsResourceFile(path) || strings.Contains(path, string(filepath.Separator)+"fuzz"+string(filepath.Separator)) {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.HasPrefix(data, []byte("go test fuzz v1\n")) {
				data = corpusBytes(t, path, data)
			}
			inputs[path] = data
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	inputs["workload"] = []byte(benchDocs(300))
	fast := 0
	for name, data := range inputs {
		if compareFast(t, data) {
			fast++
		}
		checkDecodeNode(t, data)
		fo, fe, fok := parseFast(name, data)
		so, se := parseDecoder(name, data)
		if !fok {
			continue
		}
		if !reflect.DeepEqual(fo, so) {
			t.Errorf("%s: resources differ from the decoder's", name)
		}
		if !reflect.DeepEqual(fe, se) {
			t.Errorf("%s: problems differ from the decoder's:\n%v\n%v", name, fe, se)
		}
	}
	if _, _, ok := parseFast("workload", inputs["workload"]); !ok {
		t.Error("the benchmark's documents are not read by fastYAML")
	}
	t.Logf("%d of %d inputs read by fastYAML", fast, len(inputs))
}

// FuzzFastYAML checks that whatever fastYAML reads, it reads as the decoder.
func FuzzFastYAML(f *testing.F) {
	for _, c := range append(append([]string{benchDocs(2)}, fastCases...), slowCases...) {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !compareFast(t, data) {
			return
		}
		fo, fe, ok := parseFast("f.yaml", data)
		if !ok {
			return // a '#' in a quoted string: parseFast does not try
		}
		so, se := parseDecoder("f.yaml", data)
		if !reflect.DeepEqual(fo, so) || !reflect.DeepEqual(fe, se) {
			t.Fatalf("ParseBytes differs from the decoder's:\n%v\n%v", fe, se)
		}
	})
}

// compareFast reports whether fastYAML reads data, failing t if its
// documents (trees and where they start) are not the decoder's.
func compareFast(t *testing.T, data []byte) bool {
	t.Helper()
	p := newFastYAML(data)
	var docs []*yaml.Node
	var offsets []int
	for {
		doc, off, ok := p.document()
		if !ok {
			return false
		}
		if doc == nil {
			break
		}
		docs, offsets = append(docs, doc), append(offsets, off)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	lines := newLineCursor(data)
	for i := 0; ; i++ {
		want := new(yaml.Node)
		err := dec.Decode(want)
		if errors.Is(err, io.EOF) {
			if i != len(docs) {
				t.Errorf("%q: %d documents, the decoder %d", data, len(docs), i)
			}
			return true
		}
		if err != nil {
			t.Errorf("%q: read, but the decoder says %v", data, err)
			return true
		}
		if i >= len(docs) {
			t.Errorf("%q: %d documents, the decoder more", data, len(docs))
			return true
		}
		if !reflect.DeepEqual(docs[i], want) {
			t.Errorf("%q: document %d:\n got %s\nwant %s", data, i, dumpNode(docs[i]), dumpNode(want))
		}
		if off := lines.offset(want.Line); off != offsets[i] {
			t.Errorf("%q: document %d starts at %d, want %d", data, i, offsets[i], off)
		}
	}
}

func dumpNode(n *yaml.Node) string {
	var b strings.Builder
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		b.WriteString("\n" + strings.Repeat("  ", depth))
		b.WriteString(strconv.Quote(n.Value) + " kind=" + strconv.Itoa(int(n.Kind)) + " tag=" + n.Tag + " style=" + strconv.Itoa(int(n.Style)) +
			" at " + strconv.Itoa(n.Line) + ":" + strconv.Itoa(n.Column) + " " + strconv.Quote(n.HeadComment+"|"+n.LineComment+"|"+n.FootComment))
		for _, c := range n.Content {
			walk(c, depth+1)
		}
	}
	walk(n, 0)
	return b.String()
}

// corpusBytes reads a Go fuzz corpus file holding one []byte or string.
func corpusBytes(t *testing.T, path string, data []byte) []byte {
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		return data
	}
	lit := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(lines[1], "[]byte("), "string("), ")")
	s, err := strconv.Unquote(lit)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}

// benchDocs is n MeshExternalServices as meshext-cpbench writes them.
func benchDocs(n int) string {
	ca := base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	var b strings.Builder
	b.WriteString(workload.HostnameGenerators())
	for i := 0; i < n; i++ {
		b.WriteString("---\n")
		b.WriteString(workload.MES(i, 10000+i, ca))
	}
	return b.String()
}

// TestPlainTagIsTheDecoders checks plainTag's shortcut on every first byte.
func TestPlainTagIsTheDecoders(t *testing.T) {
	for b := 0; b < 256; b++ {
		for _, rest := range []string{"", "x", "1", "0", "rue", "ull", "ALSE", "o", "es", ".5", "e3", "x10", "<", "inf", "001-12-14", ":1"} {
			v := string([]byte{byte(b)}) + rest
			n := yaml.Node{Kind: yaml.ScalarNode, Value: v}
			if got, want := plainTag(v), n.ShortTag(); got != want {
				t.Errorf("plainTag(%q) = %s, the decoder's %s", v, got, want)
			}
		}
	}
}

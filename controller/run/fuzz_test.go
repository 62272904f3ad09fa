package run

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/e2e/testenv"
)

// FuzzDropDir drives the whole drop-directory pipeline (read the files,
// parse, validate, build the model, render and check every Envoy message)
// with two fuzzed files, a.yaml and b.yaml, then cuts a.yaml short at a
// fuzzed point and compiles again, as a half-written file would arrive.
// Checked: nothing panics and no input fails the compile as a whole; every
// problem names one of the files and a line inside it (or inside the version
// it still serves something from); compiling is
// deterministic and an unchanged directory is not compiled again; and the
// cut, whatever it does to a.yaml, takes no service away that b.yaml
// serves. `make fuzz` runs it for a bounded time; `go test` runs the seeds.
func FuzzDropDir(f *testing.F) {
	seeds := testenv.ReadFiles(f, filepath.Join("..", "..", "examples", "*.yaml"), filepath.Join("..", "validate", "testdata", "*.input.yaml"))
	mes := []byte(tcpMES("mes-a", 4000, 9001))
	gen := []byte(generatorYAML)
	for _, s := range [][]byte{
		// Cut short, and cut before the parts a service needs.
		[]byte("type: MeshExternalService\nname: mes-a\nspec:\n"),
		mes[:bytes.Index(mes, []byte("  endpoints:"))],
		[]byte("type: MeshExternalService\nname: mes-a\nspec:\n  endpoints: [{address: 1.1.1.1, port: 80}]\n"),
		// Numbers of the wrong kind, huge numbers, duplicate keys.
		bytes.Replace(mes, []byte("port: 4000"), []byte("port: 4000.5"), 1),
		bytes.Replace(mes, []byte("port: 4000"), []byte("port: 1e3"), 1),
		bytes.Replace(mes, []byte("port: 9001"), []byte("port: 99999999999999999999999999"), 1),
		bytes.Replace(mes, []byte("name: mes-a\n"), []byte("name: mes-a\nname: mes-b\n"), 1),
		bytes.Replace(mes, []byte("    port: 4000\n"), []byte("    port: 4000\n    port: 4001\n"), 1),
		// Aliases: nested ("billion laughs"), self-referencing, merge keys.
		[]byte("type: Mesh\nname: m\nrouting:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
			"  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n  e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"),
		[]byte("type: Mesh\nname: m\nrouting: &r {x: [*r]}\n"),
		[]byte("type: Dataplane\nname: dp\nnetworking: &n\n  address: 127.0.0.1\n  outbound: [{port: 8080, backendRef: {kind: MeshExternalService, name: mes-a}}]\n" +
			"---\ntype: Dataplane\nname: dp2\nnetworking:\n  <<: *n\n"),
		// Deep nesting, line breaks the YAML reader counts, odd encodings.
		[]byte("type: Mesh\nname: m\nrouting: " + strings.Repeat("[", 500) + strings.Repeat("]", 500) + "\n"),
		bytes.ReplaceAll(mes, []byte("\n"), []byte("\r\n")),
		bytes.ReplaceAll(mes, []byte("\n"), []byte("\u2028")),
		append([]byte("\xff\xfe"), mes...),
		[]byte("---\n...\n---\n" + string(mes) + "...\n%YAML 1.2\n---\n" + string(gen)),
	} {
		seeds = append(seeds, s)
	}
	for i, s := range seeds {
		other := seeds[(i+1)%len(seeds)]
		f.Add(s, other, uint16(len(s)/2))
	}
	// The same name in both files, and one file holding everything.
	f.Add(append(append([]byte{}, gen...), "---\n"+string(mes)...), mes, uint16(0))
	f.Add(mes, bytes.Replace(mes, []byte("port: 4000"), []byte("port: 4444"), 1), uint16(len(mes)-3))

	f.Fuzz(func(t *testing.T, a, b []byte, cut uint16) {
		dir := t.TempDir()
		write := func(name string, data []byte) {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("a.yaml", a)
		write("b.yaml", b)
		lines := map[string]int{filepath.Join(dir, "a.yaml"): yamlLines(a), filepath.Join(dir, "b.yaml"): yamlLines(b)}

		p := fuzzPipeline(t, dir)
		first := fuzzCompile(t, p, lines)
		if _, err := p.compile(false); !errors.Is(err, errUnchanged) {
			t.Fatalf("an unchanged directory was compiled again: %v", err)
		}
		if again := fuzzCompile(t, fuzzPipeline(t, dir), lines); again.summary != first.summary {
			t.Fatalf("not deterministic:\n%s\n---\n%s", first.summary, again.summary)
		}

		// a.yaml is cut short; what b.yaml serves stays.
		// Problems of what it still serves from before may name the old lines.
		a = a[:int(cut)%(len(a)+1)]
		write("a.yaml", a)
		after := fuzzCompile(t, p, lines)
		for name := range first.servedFrom[filepath.Join(dir, "b.yaml")] {
			if !after.served[name] {
				t.Fatalf("cutting a.yaml took away %s, served from b.yaml", name)
			}
		}
	})
}

func fuzzPipeline(t *testing.T, dir string) *pipeline {
	t.Helper()
	// ADS alone: file delivery renders the same config a second time.
	cfg := &Config{Dir: dir, XDS: XDSADS, ADSListen: "127.0.0.1:0", ADSInsecure: true, Zone: "zone-1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	alloc, err := ipam.Open("", "")
	if err != nil {
		t.Fatal(err)
	}
	return newPipeline(cfg, alloc)
}

type fuzzResult struct {
	summary    string
	served     map[string]bool            // mesh/name of every service in the model
	servedFrom map[string]map[string]bool // file -> mesh/name
}

// fuzzCompile compiles and checks what every compile must give.
func fuzzCompile(t *testing.T, p *pipeline, lines map[string]int) fuzzResult {
	t.Helper()
	res, err := p.compile(true)
	if err != nil {
		t.Fatalf("the compile failed as a whole: %v", err)
	}
	for _, pr := range res.problems {
		n, ok := lines[pr.File]
		if !ok {
			t.Fatalf("problem without one of the files: %#v", pr)
		}
		if pr.Message == "" || pr.Line < 0 || pr.Line > n+1 {
			t.Fatalf("problem without a message or outside the %d-line file: %s", n, pr)
		}
	}
	r := fuzzResult{served: map[string]bool{}, servedFrom: map[string]map[string]bool{}}
	var b strings.Builder
	for _, s := range res.world.Services {
		key := s.Mesh + "/" + s.Name
		r.served[key] = true
		file := s.Resource.Source.File
		if r.servedFrom[file] == nil {
			r.servedFrom[file] = map[string]bool{}
		}
		r.servedFrom[file][key] = true
		fmt.Fprintf(&b, "service %s %s port=%d broken=%q hosts=%v\n", key, s.VIP, s.Port, s.Broken, s.Hostnames)
	}
	for _, pr := range res.problems {
		fmt.Fprintln(&b, pr.Error())
	}
	var nodes []string
	for id, n := range res.ads {
		nodes = append(nodes, fmt.Sprintf("node %s: %d clusters, %d listeners, %d secrets", id, len(n.Clusters), len(n.Listeners), len(n.Secrets)))
	}
	sort.Strings(nodes)
	b.WriteString(strings.Join(nodes, "\n"))
	r.summary = b.String()
	return r
}

// yamlLines is an upper bound of the lines the YAML reader counts: it also
// breaks lines at CR, NEL and the Unicode line and paragraph separators.
func yamlLines(data []byte) int {
	n := 1
	for _, sep := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
		n += bytes.Count(data, []byte(sep))
	}
	return n
}

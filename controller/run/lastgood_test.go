package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCutOffResourceKeepsLastGood edits one file holding two services: each
// time the first is cut short or malformed (empty spec, cut before its
// endpoints or its match, a fractional port, a duplicate key) while the
// second changes. The first keeps serving its last good version and is
// reported with file and line; the second's change is served. A torn file
// (a YAML syntax error) keeps its whole last good content.
func TestCutOffResourceKeepsLastGood(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dropWrite(t, dir, "gen.yaml", generatorYAML)
	dropWrite(t, dir, "ab.yaml", tcpMES("mes-a", 4000, 9001)+"---\n"+tcpMES("mes-b", 5000, 9002))
	r, _ := startRunner(t, Config{Dir: dir, XDS: XDSFile, XDSDir: t.TempDir()})
	waitStatus(t, r, 5*time.Second, "both served", func(s *Status) bool {
		return service(s, "mes-a") != nil && service(s, "mes-b") != nil
	})
	head := "type: MeshExternalService\nname: mes-a\nmesh: default\nlabels:\n  kuma.io/mesh: default\n"
	for i, tc := range []struct{ name, mesA, problem string }{
		{"empty spec", head + "spec:\n", "ab.yaml:6: MeshExternalService default/mes-a: spec: must be set"},
		{"cut before endpoints", head + "spec:\n  match:\n    port: 4000\n", "ab.yaml:6: MeshExternalService default/mes-a: spec.endpoints: must have at least one element"},
		{"cut before match", head + "spec:\n  endpoints:\n  - address: 127.0.0.1\n    port: 9001\n", "ab.yaml:6: MeshExternalService default/mes-a: spec.match: in body is required"},
		{"fractional port", strings.Replace(tcpMES("mes-a", 4000, 9001), "port: 4000", "port: 4000.5", 1), `ab.yaml:9: MeshExternalService default/mes-a: spec.match.port: in body must be of type integer: "number"`},
		{"duplicate key", strings.Replace(tcpMES("mes-a", 4000, 9001), "    port: 4000\n", "    port: 4000\n    port: 4444\n", 1), `ab.yaml:10: MeshExternalService default/mes-a: spec.match.port: mapping key "port" already defined at line 9`},
	} {
		bPort := 5001 + i
		dropWrite(t, dir, "ab.yaml", tc.mesA+"---\n"+tcpMES("mes-b", bPort, 9002))
		st := waitStatus(t, r, 5*time.Second, tc.name+": mes-b moved and mes-a reported", func(s *Status) bool {
			b := service(s, "mes-b")
			return b != nil && b.Port == uint32(bPort) && hasProblem(s, tc.problem)
		})
		if a := service(st, "mes-a"); a == nil || a.Port != 4000 || a.Broken != "" {
			t.Fatalf("%s: mes-a must keep serving its last good version: %+v", tc.name, a)
		}
	}

	// A syntax error: the file is not readable as a whole, so all of it keeps its last good content.
	dropWrite(t, dir, "ab.yaml", tcpMES("mes-a", 4000, 9001)+"---\n"+tcpMES("mes-b", 6000, 9002)+"  tls: [\n")
	dropWrite(t, dir, "c.yaml", tcpMES("mes-c", 7000, 9003))
	st := waitStatus(t, r, 5*time.Second, "torn file reported", func(s *Status) bool {
		return service(s, "mes-c") != nil && hasProblem(s, "ab.yaml") && hasProblem(s, "invalid YAML")
	})
	if b := service(st, "mes-b"); b == nil || b.Port != 5005 {
		t.Fatalf("mes-b should keep its last good port 5005: %+v", b)
	}
}

// TestNameOwnership defines a live service's name again in other files, one
// sorting after its own (z.yaml) and one before (0.yaml): the definition
// already serving keeps the name, each newcomer is rejected with a problem at
// its own file, and only once the owner's file drops the name does the first
// other definition in file order take over.
func TestNameOwnership(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dropWrite(t, dir, "gen.yaml", generatorYAML)
	dropWrite(t, dir, "a.yaml", tcpMES("mes-a", 4000, 9001))
	r, _ := startRunner(t, Config{Dir: dir, XDS: XDSFile, XDSDir: t.TempDir()})
	st := waitStatus(t, r, 5*time.Second, "mes-a served", func(s *Status) bool { return service(s, "mes-a") != nil })
	vip := service(st, "mes-a").VIP
	a := filepath.Join(dir, "a.yaml")

	for _, newcomer := range []string{"z.yaml", "0.yaml"} {
		dropWrite(t, dir, newcomer, tcpMES("mes-a", 4444, 9444))
		want := newcomer + ":2: MeshExternalService default/mes-a: name: duplicate MeshExternalService default/mes-a: already defined at " + a +
			":1; that definition is serving and keeps it, this one is ignored"
		st = waitStatus(t, r, 5*time.Second, newcomer+" rejected", func(s *Status) bool { return hasProblem(s, want) })
		if got := service(st, "mes-a"); got == nil || got.Port != 4000 || got.VIP != vip || got.File != a {
			t.Fatalf("%s took over mes-a: %+v", newcomer, got)
		}
		for _, p := range st.Problems {
			if strings.Contains(p.Message, "duplicate") && p.File == a {
				t.Fatalf("the serving file is blamed: %s", p)
			}
		}
	}

	// The owner's file drops the name: the first in file order (0.yaml) takes over, z.yaml stays rejected.
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, r, 5*time.Second, "0.yaml took over", func(s *Status) bool {
		m := service(s, "mes-a")
		return m != nil && m.File == filepath.Join(dir, "0.yaml")
	})
	if !hasProblem(st, "z.yaml:2: MeshExternalService default/mes-a: name: duplicate MeshExternalService default/mes-a: already defined at "+filepath.Join(dir, "0.yaml")+":1") {
		t.Fatalf("z.yaml should stay rejected: %v", st.Problems)
	}
}

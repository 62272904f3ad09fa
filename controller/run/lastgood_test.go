package run

import (
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

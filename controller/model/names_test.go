package model

import (
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/ipam"
	"github.com/meshext/meshext/controller/names"
)

func dataplaneIDs(w *World) []string {
	var ids []string
	for _, dp := range w.Dataplanes {
		ids = append(ids, dp.Mesh+"/"+dp.Name)
	}
	return ids
}

// TestNodeIDCollision: Dataplanes a.b/c and a/b.c both want node id
// "a.b.c". The one serving keeps it; the newcomer is left out with an error
// naming both, whichever sorts first.
func TestNodeIDCollision(t *testing.T) {
	dir := t.TempDir()
	dp := func(mesh, name, extra string) string {
		return "type: Dataplane\nname: " + name + "\nmesh: " + mesh + "\n" + extra + "networking: {address: 127.0.0.1}\n"
	}
	writeYAML(t, dir, "serving.yaml", dp("a.b", "c", ""))
	claims := &names.Claims{}
	w1 := Build(loadPaths(t, dir), Options{Claims: claims})
	if got := strings.Join(dataplaneIDs(w1), ","); got != "a.b/c" {
		t.Fatalf("dataplanes %s", got)
	}
	// The newcomer sorts first by mesh ("a" < "a.b") and even claims to be older.
	writeYAML(t, dir, "newcomer.yaml", dp("a", "b.c", "creationTime: \"2001-01-01T00:00:00Z\"\n"))
	w2 := Build(loadPaths(t, dir), Options{Claims: claims})
	if got := strings.Join(dataplaneIDs(w2), ","); got != "a.b/c" {
		t.Fatalf("serving Dataplane lost its node id: %s", got)
	}
	if len(w2.Problems) != 1 {
		t.Fatalf("problems %v", w2.Problems)
	}
	msg := w2.Problems[0].Error()
	for _, want := range []string{"newcomer.yaml:2: Dataplane a/b.c: name:", `Envoy node id "a.b.c" is already used by Dataplane a.b/c (`, "serving.yaml:2)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("problem %q lacks %q", msg, want)
		}
	}

	// Without memory (a fresh start, or meshext render) the older one wins:
	// creation time, then mesh and name.
	w3 := Build(loadPaths(t, dir), Options{})
	if got := strings.Join(dataplaneIDs(w3), ","); got != "a/b.c" {
		t.Fatalf("fresh build: %s", got)
	}
}

// TestClusterNameCollision: a service whose kuma.io/display-name equals
// another's name would share its Envoy cluster. The service seen first keeps
// it (its VIP lease remembers when, across restarts); the other is Broken,
// so it is never rendered, and the error names both.
func TestClusterNameCollision(t *testing.T) {
	t.Setenv(ipam.EnvCIDR, "")
	noSystemCA(t)
	state, dir := t.TempDir(), t.TempDir()
	build := func() *World {
		a, err := ipam.Open(state, "")
		if err != nil {
			t.Fatal(err)
		}
		return Build(loadPaths(t, dir), Options{IPAM: a}) // no Claims: the leases alone decide
	}
	writeYAML(t, dir, "first.yaml", "type: MeshExternalService\nname: zz-api\nmesh: default\nlabels: {kuma.io/display-name: api}\nspec: {match: {port: 80}, endpoints: [{address: 1.2.3.4, port: 80}]}\n")
	w1 := build()
	if s := w1.Service("default", "zz-api"); s.Broken != "" || s.ClusterName() != "default_api__default_extsvc_80" {
		t.Fatalf("zz-api: cluster %q broken %q", s.ClusterName(), s.Broken)
	}
	writeYAML(t, dir, "second.yaml", "type: MeshExternalService\nname: api\nmesh: default\nspec: {match: {port: 80}, endpoints: [{address: 5.6.7.8, port: 80}]}\n---\n"+
		"type: MeshExternalService\nname: api-other-port\nmesh: default\nlabels: {kuma.io/display-name: api}\nspec: {match: {port: 81}, endpoints: [{address: 5.6.7.8, port: 81}]}\n")
	w2 := build()
	first, second := w2.Service("default", "zz-api"), w2.Service("default", "api")
	if first.Broken != "" {
		t.Fatalf("the service seen first broke: %s", first.Broken)
	}
	if !strings.Contains(second.Broken, `Envoy cluster name "default_api__default_extsvc_80" is already used by MeshExternalService default/zz-api (`) ||
		!strings.Contains(second.Broken, "first.yaml:2)") {
		t.Fatalf("newcomer: broken %q", second.Broken)
	}
	if c := find(second, ConditionReady); c == nil || c.Status != StatusFalse {
		t.Fatalf("newcomer ready condition %+v", c)
	}
	// Another port is another cluster, as in Kuma.
	if s := w2.Service("default", "api-other-port"); s.Broken != "" || s.ClusterName() != "default_api__default_extsvc_81" {
		t.Fatalf("api-other-port: cluster %q broken %q", s.ClusterName(), s.Broken)
	}
}

// TestZoneEgressNodeIDNeverFolds: a ZoneEgress named "default.web" and the
// Dataplane web of mesh default are different nodes (".default.web" and
// "default.web", kuma-dp's ids), both served, no problem.
func TestZoneEgressNodeIDNeverFolds(t *testing.T) {
	dir := t.TempDir()
	writeYAML(t, dir, "r.yaml", "type: Dataplane\nname: web\nmesh: default\nnetworking: {address: 127.0.0.1}\n---\n"+
		"type: ZoneEgress\nname: default.web\nnetworking: {address: 127.0.0.2, port: 10002}\n")
	w := Build(loadPaths(t, dir), Options{Claims: &names.Claims{}})
	if len(w.Problems) != 0 || len(w.Dataplanes) != 1 || len(w.ZoneEgresses) != 1 {
		t.Fatalf("problems %v, dataplanes %v, egresses %d", w.Problems, dataplaneIDs(w), len(w.ZoneEgresses))
	}
	if a, b := names.NodeID("default", "web"), names.ZoneEgressNodeID(w.ZoneEgresses[0].Name); a == b {
		t.Fatalf("both are %s", a)
	}
}

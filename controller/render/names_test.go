package render

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/e2e/testenv"
)

// buildYAML runs docs through Load and Build as meshext run does; the
// problems are returned, not failed on.
func buildYAML(t *testing.T, docs string) *model.World {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.yaml")
	if err := os.WriteFile(p, []byte(docs), 0o600); err != nil {
		t.Fatal(err)
	}
	set, problems, err := resource.Load([]string{p}, resource.Options{})
	if err != nil || len(problems) > 0 {
		t.Fatalf("load: %v %v", err, problems)
	}
	return model.Build(set, model.Options{SystemCAPath: systemCAPath})
}

// uniqueNames fails when a node holds two clusters, listeners or secrets of
// one name: Envoy rejects such an update whole.
func uniqueNames(t *testing.T, out *Output) {
	t.Helper()
	for id, n := range out.Nodes {
		seen := map[string]bool{}
		for _, c := range n.Clusters {
			if seen["c "+c.Name] {
				t.Errorf("node %s: duplicate cluster %s", id, c.Name)
			}
			seen["c "+c.Name] = true
		}
		for _, l := range n.Listeners {
			if seen["l "+l.Name] {
				t.Errorf("node %s: duplicate listener %s", id, l.Name)
			}
			seen["l "+l.Name] = true
		}
		for _, s := range n.Secrets {
			if seen["s "+s.Name] {
				t.Errorf("node %s: duplicate secret %s", id, s.Name)
			}
			seen["s "+s.Name] = true
		}
	}
}

func problemsText(w *model.World) string {
	var b strings.Builder
	for _, p := range w.Problems {
		b.WriteString(p.Error())
		b.WriteByte('\n')
	}
	return b.String()
}

// mesDoc is a universal-style tcp MeshExternalService.
func mesDoc(name, mesh, labels, port string) string {
	if labels != "" {
		labels = "labels: {" + labels + "}\n"
	}
	return fmt.Sprintf("type: MeshExternalService\nname: %s\nmesh: %s\n%sspec: {match: {port: %s, protocol: tcp}, endpoints: [{address: 127.0.0.1, port: 9000}]}\n---\n",
		name, mesh, labels, port)
}

// TestFoldingNamesNeverReachEnvoy: inputs whose derived names used to fold,
// or still would (a display name equal to another service's name; node ids
// of dotted names; two inbounds to one service port), render to configs a
// real Envoy accepts, with the later resource refused by name.
func TestFoldingNamesNeverReachEnvoy(t *testing.T) {
	envoy := testenv.Envoy(t)

	t.Run("services", func(t *testing.T) {
		w := buildYAML(t, mesDoc("c", "a_b", "", "80")+mesDoc("b-c", "a", "", "80")+
			mesDoc("api", "default", "", "80")+mesDoc("zz-api", "default", "kuma.io/display-name: api", "80")+
			mesDoc("bank.api", "default", "", "443")+mesDoc("bank-api", "default", "", "443"))
		if got := problemsText(w); !strings.Contains(got, `MeshExternalService default/zz-api: name: Envoy cluster name "default_api__default_extsvc_80" is already used by MeshExternalService default/api (`) {
			t.Fatalf("problems:\n%s", got)
		}
		out := mustRender(t, w, Options{})
		uniqueNames(t, out)
		n := onlyNode(t, out)
		for _, want := range []string{"a_b_c__default_extsvc_80", "a_b-c__default_extsvc_80", "default_api__default_extsvc_80",
			"default_bank.api__default_extsvc_443", "default_bank-api__default_extsvc_443"} {
			if !hasCluster(n, want) {
				t.Errorf("no cluster %s", want)
			}
		}
		envoyValidate(t, envoy, out)
	})

	t.Run("dataplanes", func(t *testing.T) {
		dp := "type: Dataplane\nname: %s\nmesh: %s\nnetworking:\n  address: 127.0.0.1\n  inbound:\n" +
			"  - {port: %s, servicePort: 8080, tags: {kuma.io/service: web}}\n  - {port: %s, servicePort: 8080, tags: {kuma.io/service: web}}\n---\n"
		w := buildYAML(t, fmt.Sprintf(dp, "c", "a.b", "10001", "10002")+fmt.Sprintf(dp, "b.c", "a", "10003", "10004")+
			mesDoc("svc", "a.b", "", "80")+mesDoc("svc", "a", "", "81"))
		// No creation times, no memory: the older by Kuma's order (mesh, then name) keeps the id.
		if got := problemsText(w); !strings.Contains(got, `Dataplane a.b/c: name: Envoy node id "a.b.c" is already used by Dataplane a/b.c (`) {
			t.Fatalf("problems:\n%s", got)
		}
		out := mustRender(t, w, Options{})
		if ids := strings.Join(out.NodeIDs(), ","); ids != "a.b.c" {
			t.Fatalf("nodes %s", ids)
		}
		n := out.Nodes["a.b.c"]
		if n.Dataplane.Mesh != "a" || !hasCluster(n, "a_svc__default_extsvc_81") || hasCluster(n, "a.b_svc__default_extsvc_80") {
			t.Fatalf("node a.b.c serves the wrong Dataplane: %s/%s", n.Dataplane.Mesh, n.Dataplane.Name)
		}
		uniqueNames(t, out)
		envoyValidate(t, envoy, out)
	})

	t.Run("hand-built world", func(t *testing.T) {
		// A World that skipped Build's check: Render refuses the second
		// service of a cluster name rather than hand Envoy a duplicate.
		a, b := svc("a", "tcp", 80, ep("10.0.0.1", 80)), svc("b", "tcp", 81, ep("10.0.0.2", 81))
		a.Cluster, b.Cluster = "same", "same"
		w := world(a, b)
		out := mustRender(t, w, Options{})
		uniqueNames(t, out)
		if b.Broken == "" || !strings.Contains(b.Broken, `Envoy cluster name "same" is already used by MeshExternalService default/a`) {
			t.Fatalf("b: broken %q", b.Broken)
		}
		envoyValidate(t, envoy, out)
	})
}

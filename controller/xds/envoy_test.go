package xds

import (
	"context"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/meshext/meshext/controller/xds/envoytest"
	"github.com/meshext/meshext/e2e/testpki"
)

const envoyWait = 15 * time.Second

func testCA(t *testing.T) []byte {
	ca, err := testpki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca.CertPEM
}

// TestFileDropsReachEnvoy drives a real Envoy through file-based CDS, LDS and
// SDS: initial config, an added service, a rotated secret, a removed service.
func TestFileDropsReachEnvoy(t *testing.T) {
	t.Parallel()
	w := &FileWriter{Dir: t.TempDir()}
	node := "default.dp-files"
	src := func(secret string) *clusterv3.Cluster {
		return withCASecret(testCluster("svc-"+secret, 9), secret,
			fileSource(SecretPath(w.Dir, secret), SecretDir(w.Dir)))
	}
	res := func(secrets map[string][]byte, names ...string) map[string]*Resources {
		r := &Resources{}
		for _, n := range names {
			r.Clusters = append(r.Clusters, src(n))
			r.Listeners = append(r.Listeners, testListener("out-"+n, "svc-"+n, n))
			r.Secrets = append(r.Secrets, caSecret(n, secrets[n]))
		}
		return map[string]*Resources{node: r}
	}
	pems := map[string][]byte{"a": testCA(t), "b": testCA(t)}
	if _, err := w.Write(res(pems, "a")); err != nil {
		t.Fatal(err)
	}
	e := envoytest.Start(t, envoytest.FileBootstrap(node, CDSPath(w.Dir, node), LDSPath(w.Dir, node)))
	c := e.WaitConfig(t, envoyWait, "svc-a with its listener and secret", func(c *envoytest.Config) bool {
		return c.Clusters["svc-a"] != "" && c.Listeners["out-a"] != "" && c.Secrets["a"] != ""
	})
	secretV1 := c.Secrets["a"]

	if _, err := w.Write(res(pems, "a", "b")); err != nil {
		t.Fatal(err)
	}
	c = e.WaitConfig(t, envoyWait, "svc-b added", func(c *envoytest.Config) bool {
		return c.Clusters["svc-b"] != "" && c.Listeners["out-b"] != "" && c.Secrets["b"] != ""
	})
	cdsVersion := c.Clusters["svc-a"]

	// Rotating a CA changes only the secret: the cluster is not rebuilt.
	pems["a"] = testCA(t)
	if _, err := w.Write(res(pems, "a", "b")); err != nil {
		t.Fatal(err)
	}
	c = e.WaitConfig(t, envoyWait, "secret a rotated", func(c *envoytest.Config) bool {
		return c.Secrets["a"] != "" && c.Secrets["a"] != secretV1
	})
	if c.Clusters["svc-a"] != cdsVersion {
		t.Errorf("cluster svc-a re-delivered on secret rotation: version %q -> %q", cdsVersion, c.Clusters["svc-a"])
	}

	if _, err := w.Write(res(pems, "b")); err != nil {
		t.Fatal(err)
	}
	e.WaitConfig(t, envoyWait, "svc-a removed", func(c *envoytest.Config) bool {
		_, ca := c.Clusters["svc-a"]
		_, la := c.Listeners["out-a"]
		return !ca && !la && c.Clusters["svc-b"] != ""
	})
	for _, stat := range []string{"cluster_manager.cds.update_rejected", "listener_manager.lds.update_rejected"} {
		if v, err := e.Stat(stat); err != nil || v != "0" {
			t.Errorf("%s = %q (%v), want 0: Envoy rejected a file", stat, v, err)
		}
	}
}

// TestADSReachesEnvoy serves two Envoys, one SotW and one delta, from one
// server on its unix socket, each with its own node id, and checks updates
// and SDS arrive.
func TestADSReachesEnvoy(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	srv := NewServer(ctx, nil)
	ep, err := ListenUnix(socketPath(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ctx, cancel, srv, ep)

	pem := testCA(t)
	nodes := func(names ...string) map[string]*Resources {
		out := map[string]*Resources{}
		for _, node := range []string{"mesh.sotw", "mesh.delta"} {
			r := &Resources{}
			for _, n := range names {
				r.Clusters = append(r.Clusters, withCASecret(testCluster("svc-"+n, 9), "ca-"+n, nil))
				r.Listeners = append(r.Listeners, testListener("out-"+n, "svc-"+n, n))
				r.Secrets = append(r.Secrets, caSecret("ca-"+n, pem))
			}
			// Node-specific content proves snapshots are per node.
			r.Clusters = append(r.Clusters, testCluster("only-"+node, 9))
			out[node] = r
		}
		return out
	}
	if err := srv.Update(ctx, nodes("a")); err != nil {
		t.Fatal(err)
	}
	sotw := envoytest.Start(t, envoytest.ADSBootstrap("mesh.sotw", ep.Addr(), false))
	delta := envoytest.Start(t, envoytest.ADSBootstrap("mesh.delta", ep.Addr(), true))
	for _, e := range []struct {
		name string
		e    *envoytest.Envoy
	}{{"mesh.sotw", sotw}, {"mesh.delta", delta}} {
		e.e.WaitConfig(t, envoyWait, e.name+": initial", func(c *envoytest.Config) bool {
			return c.Clusters["svc-a"] != "" && c.Listeners["out-a"] != "" && c.Secrets["ca-a"] != "" && c.Clusters["only-"+e.name] != ""
		})
	}
	if err := srv.Update(ctx, nodes("a", "b")); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*envoytest.Envoy{sotw, delta} {
		e.WaitConfig(t, envoyWait, "svc-b added", func(c *envoytest.Config) bool {
			return c.Clusters["svc-b"] != "" && c.Listeners["out-b"] != "" && c.Secrets["ca-b"] != ""
		})
	}
	if err := srv.Update(ctx, nodes("b")); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*envoytest.Envoy{sotw, delta} {
		e.WaitConfig(t, envoyWait, "svc-a removed", func(c *envoytest.Config) bool {
			_, ok := c.Clusters["svc-a"]
			return !ok && c.Clusters["svc-b"] != ""
		})
	}
	// A NACK would show up as rejected updates.
	for _, e := range []*envoytest.Envoy{sotw, delta} {
		if v, _ := e.Stat("cluster_manager.cds.update_rejected"); v != "0" {
			t.Errorf("cds.update_rejected = %q", v)
		}
	}
}

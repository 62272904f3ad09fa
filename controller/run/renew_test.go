package run

import (
	"strings"
	"testing"
	"time"

	"github.com/meshext/meshext/controller/names"
	"github.com/meshext/meshext/controller/xds"
)

// meshext run renews identities on its own, without any input change:
// with a 10 s certificate lifetime (plus Kuma's 10 s skew) the first
// renewal is due about 3.3 s after issuance, and the new certificate
// reaches the node's SDS file; clusters and listeners stay as they were.
func TestIdentitiesRenewOnTheirOwn(t *testing.T) {
	t.Parallel()
	dir, state, out := t.TempDir(), t.TempDir(), t.TempDir()
	dropWrite(t, dir, "mesh.yaml", `type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
      dpCert:
        rotation:
          expiration: 10s
`)
	dropWrite(t, dir, "egress.yaml", "type: ZoneEgress\nname: egress-1\nnetworking:\n  address: 127.0.0.2\n  port: 10002\n")
	dropWrite(t, dir, "a.yaml", tcpMES("mes-a", 4000, 9001))
	dropWrite(t, dir, "dp.yaml", dataplaneYAML("web", 15101))
	r, _ := startRunner(t, Config{Dir: dir, StateDir: state, XDS: XDSFile, XDSDir: out, StatusListen: "127.0.0.1:0"})

	serial := func(s *Status, node string) string {
		for _, id := range s.Identities {
			if id.Node == node {
				return id.Serial
			}
		}
		return ""
	}
	st := waitStatus(t, r, 20*time.Second, "identities issued", func(s *Status) bool {
		return serial(s, "default.web") != "" && serial(s, ".egress-1") != ""
	})
	first := serial(st, "default.web")
	secret := xds.SecretPath(out, names.IdentitySecret("default", "default.web"))
	before, cdsBefore := readFile(t, secret), readFile(t, xds.CDSPath(out, "default.web"))
	for _, id := range st.Identities {
		if id.Node != "" && !id.RenewAt.Before(id.NotAfter) {
			t.Fatalf("%s renews at %s, not before it expires at %s", id.Node, id.RenewAt, id.NotAfter)
		}
	}
	waitStatus(t, r, 15*time.Second, "web's identity renewed", func(s *Status) bool {
		return serial(s, "default.web") != first
	})
	if readFile(t, secret) == before {
		t.Fatal("the renewed certificate did not reach the SDS file")
	}
	if readFile(t, xds.CDSPath(out, "default.web")) != cdsBefore {
		t.Fatal("renewal changed the clusters; only the secret may change")
	}
	if strings.Contains(readFile(t, xds.LDSPath(out, "default.web")), "PRIVATE KEY") {
		t.Fatal("a key in lds.json")
	}
}

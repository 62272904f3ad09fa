package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/resource"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Fixed stand-ins for PEM material in hand-built worlds: golden files must not
// change from run to run. Tests that start Envoy use real certificates.
var (
	fakeCA         = []byte("-----BEGIN CERTIFICATE-----\nfake CA for golden files\n-----END CERTIFICATE-----\n")
	fakeClientCert = []byte("-----BEGIN CERTIFICATE-----\nfake client cert for golden files\n-----END CERTIFICATE-----\n")
	fakeClientKey  = []byte("-----BEGIN PRIVATE KEY-----\nfake client key for golden files\n-----END PRIVATE KEY-----\n")
)

// systemCAPath is a committed test CA standing in for the OS bundle; relative,
// so golden files do not depend on where the tree is checked out.
const systemCAPath = "testdata/system-ca.pem"

// ep builds a model endpoint the way model.Build does.
func ep(addr string, port uint32) model.Endpoint {
	e := model.Endpoint{Address: addr, Port: port}
	if p, ok := strings.CutPrefix(addr, resource.UnixPrefix); ok {
		e.Address, e.Unix, e.Port = p, true, 0
	} else if _, err := netip.ParseAddr(addr); err == nil {
		e.IsIP = true
	}
	return e
}

func prio(e model.Endpoint, p uint32) model.Endpoint { e.Priority = p; return e }

// svc builds a service in mesh "default" with a VIP derived from its position.
func svc(name, protocol string, port uint32, eps ...model.Endpoint) *model.Service {
	return &model.Service{Mesh: "default", Name: name, Protocol: protocol, Port: port, Endpoints: eps}
}

// tlsSecured is Secured with the fake CA and default versions.
func tlsSecured() *model.TLS {
	return &model.TLS{Mode: resource.ModeSecured, MinVersion: resource.TLSAuto, MaxVersion: resource.TLSAuto, CA: fakeCA, CASource: "inline"}
}

func withTLS(s *model.Service, t *model.TLS) *model.Service { s.TLS = t; return s }

// world numbers VIPs 242.0.0.1.. in service order, like a fresh allocator.
func world(services ...*model.Service) *model.World {
	w := &model.World{Meshes: map[string]*resource.Mesh{}}
	for i, s := range services {
		if !s.VIP.IsValid() {
			s.VIP = netip.AddrFrom4([4]byte{242, 0, 0, byte(i + 1)})
		}
		w.Services = append(w.Services, s)
	}
	return w
}

func mustRender(t testing.TB, w *model.World, opts Options) *Output {
	t.Helper()
	out, err := Render(w, opts)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return out
}

// onlyNode returns the single node of out.
func onlyNode(t testing.TB, out *Output) *Node {
	t.Helper()
	if len(out.Nodes) != 1 {
		t.Fatalf("want 1 node, got %v", out.NodeIDs())
	}
	for _, n := range out.Nodes {
		return n
	}
	return nil
}

// upstreamTLSOf unpacks a cluster's UpstreamTlsContext (nil when plaintext).
func upstreamTLSOf(t testing.TB, n *Node, cluster string) *tlsv3.UpstreamTlsContext {
	t.Helper()
	for _, c := range n.Clusters {
		if c.Name != cluster {
			continue
		}
		if c.TransportSocket == nil {
			return nil
		}
		up := &tlsv3.UpstreamTlsContext{}
		if err := c.TransportSocket.GetTypedConfig().UnmarshalTo(up); err != nil {
			t.Fatal(err)
		}
		return up
	}
	t.Fatalf("no cluster %s in node %s", cluster, n.ID)
	return nil
}

func clusterByName(n *Node, name string) *clusterv3.Cluster {
	for _, c := range n.Clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func secretByName(n *Node, name string) *tlsv3.Secret {
	for _, s := range n.Secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// redacted replaces every inline secret byte string with its length and hash,
// so golden files show which material went where without holding any.
func redacted(s *tlsv3.Secret) *tlsv3.Secret {
	c := proto.Clone(s).(*tlsv3.Secret)
	red := func(ds *corev3.DataSource) {
		if b := ds.GetInlineBytes(); b != nil {
			sum := sha256.Sum256(b)
			ds.Specifier = &corev3.DataSource_InlineString{InlineString: fmt.Sprintf("REDACTED %d bytes sha256:%x", len(b), sum[:6])}
		}
	}
	if tc := c.GetTlsCertificate(); tc != nil {
		red(tc.CertificateChain)
		red(tc.PrivateKey)
	}
	if vc := c.GetValidationContext(); vc != nil {
		red(vc.TrustedCa)
	}
	return c
}

func rawJSON(t testing.TB, m proto.Message) json.RawMessage {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snapshot is the golden-file view of a render: every node's resources
// (secrets redacted), the warnings, and each service's Rendered condition.
func snapshot(t testing.TB, w *model.World, out *Output) []byte {
	t.Helper()
	type svcView struct {
		Name      string          `json:"name"`
		Broken    string          `json:"broken,omitempty"`
		Condition model.Condition `json:"rendered"`
	}
	var svcs []svcView
	for _, s := range w.Services {
		v := svcView{Name: s.Mesh + "/" + s.Name, Broken: s.Broken}
		for _, c := range s.Conditions {
			if c.Type == ConditionRendered {
				v.Condition = c
			}
		}
		svcs = append(svcs, v)
	}
	nodes := map[string]any{}
	for id, n := range out.Nodes {
		var cs, ls, ss []json.RawMessage
		for _, c := range n.Clusters {
			cs = append(cs, rawJSON(t, c))
		}
		for _, l := range n.Listeners {
			ls = append(ls, rawJSON(t, l))
		}
		for _, s := range n.Secrets {
			ss = append(ss, rawJSON(t, redacted(s)))
		}
		view := map[string]any{"version": version(t, n), "adminPort": n.AdminPort, "clusters": cs, "listeners": ls, "secrets": ss}
		if len(n.Routes) > 0 {
			var rs []json.RawMessage
			for _, rc := range n.Routes {
				rs = append(rs, rawJSON(t, rc))
			}
			view["routes"] = rs
		}
		nodes[id] = view
	}
	b, err := json.Marshal(map[string]any{"services": svcs, "warnings": out.Warnings, "nodes": nodes})
	if err != nil {
		t.Fatal(err)
	}
	b, err = canonicalize(b)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// golden compares got with the file (or rewrites it with -update).
func golden(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./controller/render -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the rendered config (rerun with -update if the change is intended):\n%s", path, firstDiff(want, got))
	}
}

// firstDiff shows a few lines around the first differing line.
func firstDiff(want, got []byte) string {
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, w, g)
		}
	}
	return "(identical lines, different bytes)"
}

// version is n.Version(), failing the test on an error.
func version(t testing.TB, n *Node) string {
	t.Helper()
	v, err := n.Version()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

package xds

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshext/meshext/controller/pki"
	"github.com/meshext/meshext/e2e/testenv"
)

// The helper process of TestUnixSocketRefusesOtherUsers: run as another
// user, it probes the socket and prints what it got as JSON.
const probeEnv = "MESHEXT_XDS_PROBE_SOCKET"

type probeResult struct {
	Names []string `json:"names"`
	Error string   `json:"error"`
}

func TestMain(m *testing.M) {
	if path := os.Getenv(probeEnv); path != "" {
		var r probeResult
		conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			r.Names, err = probe(conn, "mesh.a", "ads-sotw")
			conn.Close()
		}
		if err != nil {
			r.Error = err.Error()
		}
		json.NewEncoder(os.Stdout).Encode(&r)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// socketPath is a short path (unix socket paths are limited to 108 bytes)
// in a fresh private directory.
func socketPath(t testing.TB) string {
	dir, err := os.MkdirTemp("", "xds-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "ads.sock")
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serveNodes serves mesh.a and mesh.b, each with a cluster of its own, on ep.
func serveNodes(t *testing.T, ep *Endpoint) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := NewServer(ctx, quietLog())
	nodes := map[string]*Resources{}
	for _, n := range []string{"mesh.a", "mesh.b"} {
		nodes[n] = &Resources{Clusters: []*clusterv3.Cluster{testCluster("only-"+n, 9)}}
	}
	if err := srv.Update(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	serve(t, ctx, cancel, srv, ep)
}

// serve runs srv on ep until the test ends, then cancels ctx and expects
// Serve to return cleanly within its grace period.
func serve(t *testing.T, ctx context.Context, cancel context.CancelFunc, srv *Server, ep *Endpoint) {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ep) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(2 * ShutdownGrace):
			t.Errorf("Serve did not return after cancel")
		}
	})
}

// probe asks for clusters as node over conn and returns the names in the
// first response, or the error that ended the call. mode is ads-sotw,
// ads-delta, cds-sotw, cds-delta or cds-fetch. At most 5 s.
func probe(conn *grpc.ClientConn, node, mode string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := &corev3.Node{Id: node}
	sotw := &discoveryv3.DiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType}
	delta := &discoveryv3.DeltaDiscoveryRequest{Node: n, TypeUrl: resourcev3.ClusterType}
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	cds := clusterservice.NewClusterDiscoveryServiceClient(conn)
	var resp *discoveryv3.DiscoveryResponse
	var dresp *discoveryv3.DeltaDiscoveryResponse
	var err error
	switch mode {
	case "ads-sotw", "cds-sotw":
		var st grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
		if mode == "ads-sotw" {
			st, err = ads.StreamAggregatedResources(ctx)
		} else {
			st, err = cds.StreamClusters(ctx)
		}
		if err == nil {
			if err = st.Send(sotw); err == nil {
				resp, err = st.Recv()
			}
		}
	case "ads-delta", "cds-delta":
		var st grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
		if mode == "ads-delta" {
			st, err = ads.DeltaAggregatedResources(ctx)
		} else {
			st, err = cds.DeltaClusters(ctx)
		}
		if err == nil {
			if err = st.Send(delta); err == nil {
				dresp, err = st.Recv()
			}
		}
	case "cds-fetch":
		resp, err = cds.FetchClusters(ctx, sotw)
	default:
		return nil, fmt.Errorf("unknown probe mode %q", mode)
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, a := range resp.GetResources() {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			return nil, err
		}
		names = append(names, c.Name)
	}
	for _, r := range dresp.GetResources() {
		names = append(names, r.Name)
	}
	return names, nil
}

var probeModes = []string{"ads-sotw", "ads-delta", "cds-sotw", "cds-delta", "cds-fetch"}

// wantOwn checks a valid client got exactly its own node's resources.
func wantOwn(t *testing.T, conn *grpc.ClientConn, node, mode string) {
	t.Helper()
	names, err := probe(conn, node, mode)
	if err != nil || !slices.Equal(names, []string{"only-" + node}) {
		t.Errorf("%s as %s: got %v (%v), want exactly [only-%s]", mode, node, names, err, node)
	}
}

// wantNothing checks a call got no resource and was refused with code (any
// error when code is OK).
func wantNothing(t *testing.T, conn *grpc.ClientConn, node, mode string, code codes.Code) {
	t.Helper()
	names, err := probe(conn, node, mode)
	if len(names) > 0 || err == nil {
		t.Errorf("%s as %s: got %v (%v), want nothing", mode, node, names, err)
		return
	}
	if code != codes.OK && status.Code(err) != code {
		t.Errorf("%s as %s: refused with %v, want %v", mode, node, err, code)
	}
}

func dial(t *testing.T, target string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestUnixSocketServesOwnUser(t *testing.T) {
	t.Parallel()
	path := socketPath(t)
	ep, err := ListenUnix(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %04o", p, st.Mode().Perm(), err, want)
		}
	}
	if ep.Addr() != "unix:"+path || ep.Kind() != EndpointUnix {
		t.Errorf("Addr %q Kind %q", ep.Addr(), ep.Kind())
	}
	serveNodes(t, ep)
	conn := dial(t, "unix://"+path, insecure.NewCredentials())
	for _, mode := range probeModes {
		wantOwn(t, conn, "mesh.a", mode)
		wantOwn(t, conn, "mesh.b", mode)
	}
	// A second server on a live socket is refused; a stale socket is replaced.
	if _, err := ListenUnix(path, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second ListenUnix on a live socket: %v", err)
	}
	if _, err := ListenUnix("relative.sock", nil); err == nil {
		t.Errorf("relative socket path accepted")
	}
}

// TestUnixSocketRefusesOtherUsers runs a probe as nobody: with the socket's
// permissions it cannot even connect; with them opened up (as a careless
// operator might), the SO_PEERCRED check still refuses it.
func TestUnixSocketRefusesOtherUsers(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	path := socketPath(t)
	ep, err := ListenUnix(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	serveNodes(t, ep)
	// The test binary, where nobody can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	binDir, err := os.MkdirTemp("", "xds-probe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "probe")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func(what string) probeResult {
		t.Helper()
		cmd := exec.Command(bin)
		cmd.Env = []string{probeEnv + "=" + path}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: probe as nobody: %v\n%s", what, err, out)
		}
		var r probeResult
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("%s: probe output %q: %v", what, out, err)
		}
		if len(r.Names) > 0 || r.Error == "" {
			t.Errorf("%s: nobody got %v (error %q), want nothing", what, r.Names, r.Error)
		}
		return r
	}
	r := asNobody("default permissions")
	if !strings.Contains(r.Error, "permission denied") {
		t.Errorf("default permissions: want the connect refused by the file system, got %q", r.Error)
	}
	if err := os.Chmod(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	r = asNobody("socket opened to everyone")
	if strings.Contains(r.Error, "permission denied") {
		t.Errorf("opened socket: the probe did not reach the peer-credential check: %q", r.Error)
	}
	// Our own user still gets its config through the same socket.
	wantOwn(t, dial(t, "unix://"+path, insecure.NewCredentials()), "mesh.a", "ads-sotw")
}

// mtlsServer serves mesh.a and mesh.b over mTLS with a new xDS CA.
func mtlsServer(t *testing.T) (addr string, ca *pki.CA) {
	t.Helper()
	ca, created, err := LoadOrCreateCA(t.TempDir())
	if err != nil || !created {
		t.Fatalf("xDS CA: %v (created %v)", err, created)
	}
	cfg, err := ServerTLS(ca, []string{"127.0.0.1", "xds.test"})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := ListenMTLS("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	serveNodes(t, ep)
	return ep.Addr(), ca
}

func clientTLS(ca *pki.CA, certs ...tls.Certificate) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "xds.test", Certificates: certs})
}

func clientCert(t *testing.T, ca *pki.CA, node string) tls.Certificate {
	t.Helper()
	kp, err := IssueClientCert(ca, node, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return kp.TLSCertificate()
}

func TestMTLSServesOnlyTheCertifiedNode(t *testing.T) {
	t.Parallel()
	addr, ca := mtlsServer(t)
	a := dial(t, addr, clientTLS(ca, clientCert(t, ca, "mesh.a")))
	for _, mode := range probeModes {
		wantOwn(t, a, "mesh.a", mode)
		// Node A's certificate asking as node B: refused, on every kind of stream.
		wantNothing(t, a, "mesh.b", mode, codes.PermissionDenied)
		wantNothing(t, a, "", mode, codes.PermissionDenied)
	}
	wantOwn(t, dial(t, addr, clientTLS(ca, clientCert(t, ca, "mesh.b"))), "mesh.b", "ads-delta")

	// A stream that starts as A and then asks as B is closed.
	for _, delta := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ads := discoveryv3.NewAggregatedDiscoveryServiceClient(a)
		var err error
		if delta {
			st, serr := ads.DeltaAggregatedResources(ctx)
			if serr != nil {
				t.Fatal(serr)
			}
			for _, n := range []string{"mesh.a", "mesh.b"} {
				if err = st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: n}, TypeUrl: resourcev3.ClusterType}); err == nil {
					_, err = st.Recv()
				}
			}
		} else {
			st, serr := ads.StreamAggregatedResources(ctx)
			if serr != nil {
				t.Fatal(serr)
			}
			for _, n := range []string{"mesh.a", "mesh.b"} {
				if err = st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: n}, TypeUrl: resourcev3.ClusterType}); err == nil {
					var resp *discoveryv3.DiscoveryResponse
					if resp, err = st.Recv(); err == nil && n == "mesh.b" {
						t.Errorf("sotw: a response after switching to mesh.b: %v", resp)
					}
				}
			}
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("delta=%v: switching nodes mid-stream ended with %v, want PermissionDenied", delta, err)
		}
		cancel()
	}
}

func TestMTLSRefusesUncertifiedClients(t *testing.T) {
	t.Parallel()
	addr, ca := mtlsServer(t)
	other, _, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cnOnly, err := ca.Issue(pki.LeafOptions{CommonName: "mesh.a"})
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]credentials.TransportCredentials{
		"no certificate":             clientTLS(ca),
		"certificate from other CA":  clientTLS(ca, clientCert(t, other, "mesh.a")),
		"CN without SPIFFE identity": clientTLS(ca, cnOnly.TLSCertificate()),
		"plain gRPC":                 insecure.NewCredentials(),
	}
	for name, creds := range clients {
		conn := dial(t, addr, creds)
		for _, mode := range probeModes {
			names, err := probe(conn, "mesh.a", mode)
			if len(names) > 0 || err == nil {
				t.Errorf("%s, %s: got %v (%v), want nothing", name, mode, names, err)
			}
		}
	}
	if _, err := ServerTLS(ca, nil); err == nil {
		t.Errorf("server certificate without names accepted")
	}
	if _, err := ListenMTLS("127.0.0.1:0", &tls.Config{}); err == nil {
		t.Errorf("mTLS without required client certificates accepted")
	}
	if _, err := NodeSPIFFEID("a/b"); err == nil {
		t.Errorf("node id with '/' accepted as an identity")
	}
}

func TestInsecureServesAnyone(t *testing.T) {
	t.Parallel()
	ep, err := ListenInsecure("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveNodes(t, ep)
	conn := dial(t, ep.Addr(), insecure.NewCredentials())
	wantOwn(t, conn, "mesh.a", "ads-sotw")
	wantOwn(t, conn, "mesh.b", "ads-delta")
	wantNothing(t, conn, "", "ads-sotw", codes.PermissionDenied)
}

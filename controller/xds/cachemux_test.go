package xds

import (
	"context"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/credentials/insecure"
)

// TestADSAnswersSecretsAskedForInSteps asks for a node's secrets the way a
// ZoneEgress's Envoy does: first only some of them (its clusters'), then all
// (its listener's too, once the clusters are warm). Each request is answered
// at once with what it names; an ADS-mode cache held the first one back
// until Envoy's initial-fetch timeout because it did not name every secret.
func TestADSAnswersSecretsAskedForInSteps(t *testing.T) {
	t.Parallel()
	path := socketPath(t)
	ep, err := ListenUnix(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := NewServer(ctx, quietLog())
	pem := testCA(t)
	res := &Resources{
		Clusters: []*clusterv3.Cluster{testCluster("c", 9)},
		Secrets:  []*tlsv3.Secret{caSecret("upstream-ca", pem), caSecret("mesh-ca", pem), caSecret("identity", pem)},
	}
	if err := srv.Update(ctx, map[string]*Resources{"mesh.a": res}); err != nil {
		t.Fatal(err)
	}
	serve(t, ctx, cancel, srv, ep)

	conn := dial(t, "unix://"+path, insecure.NewCredentials())
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "mesh.a"}
	var version, nonce string // of the last response, acknowledged by the next request
	ask := func(names ...string) []string {
		t.Helper()
		start := time.Now()
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.SecretType,
			ResourceNames: names, VersionInfo: version, ResponseNonce: nonce}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("asking for %v: %v", names, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("asking for %v took %v", names, d)
		}
		version, nonce = resp.GetVersionInfo(), resp.GetNonce()
		var got []string
		for _, a := range resp.GetResources() {
			s := &tlsv3.Secret{}
			if err := a.UnmarshalTo(s); err != nil {
				t.Fatal(err)
			}
			got = append(got, s.Name)
		}
		slices.Sort(got)
		return got
	}
	if got := ask("upstream-ca"); !slices.Equal(got, []string{"upstream-ca"}) {
		t.Errorf("first step: got %v, want [upstream-ca]", got)
	}
	if got := ask("upstream-ca", "mesh-ca", "identity"); !slices.Equal(got, []string{"identity", "mesh-ca", "upstream-ca"}) {
		t.Errorf("second step: got %v, want all three", got)
	}
}

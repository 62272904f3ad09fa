package rbac_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/e2e/testnet"
	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/envoytest"
	"github.com/meshext/meshext/plugin/rbac"
)

func nativeTable(t *testing.T, dflt string) *core.Table {
	t.Helper()
	svc := func(name, proto, cluster string, port uint32, vip string) core.Service {
		return core.Service{Name: name, Mesh: "default", Cluster: cluster, Protocol: proto, Port: port, VIP: vip, Hostnames: []string{name + ".extsvc.mesh.local"}}
	}
	tab, err := core.Compile(&core.Config{
		Source: source,
		Services: []core.Service{
			svc("open", "http", "mes_http", 80, "242.0.0.1"),
			svc("closed", "http", "mes_http", 80, ""),
			svc("grpc-closed", "grpc", "mes_grpc", 9000, ""),
			svc("db", "tcp", "mes_db", 5432, "242.0.0.9"),
		},
		Policies: []core.Policy{
			{Name: "deny-closed", Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMeshExternalService, Name: "closed"},
				From: []core.From{{TargetRef: core.TargetRef{Kind: core.KindMesh}, Default: core.Conf{Action: core.Deny}}}},
			{Name: "deny-grpc", Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMeshExternalService, Name: "grpc-closed"},
				From: []core.From{{TargetRef: core.TargetRef{Kind: core.KindMesh}, Default: core.Conf{Action: core.Deny}}}},
		},
		DefaultService: dflt,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestVirtualHostsShape(t *testing.T) {
	vhs, err := rbac.VirtualHosts(nativeTable(t, ""), rbac.ByListenerOwner)
	if err != nil {
		t.Fatal(err)
	}
	if len(vhs) != 4 { // open, closed, grpc-closed, catch-all; tcp db skipped
		t.Fatalf("%d virtual hosts", len(vhs))
	}
	rc := &routev3.RouteConfiguration{Name: "x", VirtualHosts: vhs}
	if err := rc.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(vhs[0].GetDomains(), ","); got != "242.0.0.1,242.0.0.1:80,open.extsvc.mesh.local,open.extsvc.mesh.local:80" {
		t.Fatalf("domains %s", got)
	}
	if vhs[3].GetRoutes()[0].GetDirectResponse().GetStatus() != 404 {
		t.Fatalf("catch-all %v", vhs[3])
	}
	withDefault, err := rbac.VirtualHosts(nativeTable(t, "open"), rbac.ByListenerOwner)
	if err != nil {
		t.Fatal(err)
	}
	if last := withDefault[len(withDefault)-1]; last.GetDomains()[0] != "*" || last.GetRoutes()[0].GetRoute().GetCluster() != "mes_http" {
		t.Fatalf("default service catch-all %v", last)
	}
}

// TestVirtualHostsInEnvoy: --plugin=off rendering (native routes + per-route
// RBAC) gives the same answers as the Go filter in the real Envoy.
func TestVirtualHostsInEnvoy(t *testing.T) {
	envoyBin := testenv.Envoy(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "upstream %s", r.URL.Path) }))
	defer up.Close()
	grpcAddr := testnet.GRPCHealthServer(t)

	vhs, err := rbac.VirtualHosts(nativeTable(t, ""), rbac.ByListenerOwner)
	if err != nil {
		t.Fatal(err)
	}
	rf, err := rbac.HTTPFilter()
	if err != nil {
		t.Fatal(err)
	}
	var vhJSON []json.RawMessage
	for _, vh := range vhs {
		vhJSON = append(vhJSON, jsonOf(t, vh))
	}
	cluster := func(name, addr string, h2 bool) obj {
		host, port, _ := net.SplitHostPort(addr)
		c := obj{"name": name, "type": "STATIC", "connect_timeout": "2s",
			"load_assignment": obj{"cluster_name": name, "endpoints": []any{obj{"lb_endpoints": []any{
				obj{"endpoint": obj{"address": obj{"socket_address": obj{"address": host, "port_value": json.Number(port)}}}}}}}}}
		if h2 {
			c["typed_extension_protocol_options"] = obj{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": obj{
				"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": obj{"http2_protocol_options": obj{}}}}
		}
		return c
	}
	boot := obj{
		"admin": obj{"address": obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}}},
		"static_resources": obj{
			"clusters": []any{cluster("mes_http", strings.TrimPrefix(up.URL, "http://"), false), cluster("mes_grpc", grpcAddr, true)},
			"listeners": []any{obj{
				"name":    "native",
				"address": obj{"socket_address": obj{"address": "127.0.0.1", "port_value": 0}},
				"filter_chains": []any{obj{"filters": []any{obj{"name": "envoy.filters.network.http_connection_manager", "typed_config": obj{
					"@type":                   "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
					"stat_prefix":             "native",
					"codec_type":              "AUTO",
					"strip_trailing_host_dot": true,
					"route_config":            obj{"name": "native", "virtual_hosts": vhJSON},
					"http_filters": []any{jsonOf(t, rf), obj{"name": "envoy.filters.http.router", "typed_config": obj{
						"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}},
				}}}}},
			}},
		},
	}
	bootJSON, err := json.Marshal(boot)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	var logs strings.Builder
	env, err := envoytest.StartStatic(ctx, t.TempDir(), envoyBin, bootJSON, []string{"native"}, lockedWriter{&mu, &logs})
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%v\n%s", err, logs.String())
	}
	defer env.Stop()
	addr := env.Listeners["native"]
	for host, want := range map[string]int{
		"open.extsvc.mesh.local":     200,
		"OPEN.extsvc.mesh.local.:80": 200,
		"242.0.0.1:80":               200,
		"closed.extsvc.mesh.local":   403,
		"db.extsvc.mesh.local":       404, // TCP MES are not HTTP routes
		"nothing.example":            404,
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/p", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: got %d %q, want %d", host, resp.StatusCode, b, want)
		}
		if want == 200 && string(b) != "upstream /p" {
			t.Errorf("%s: body %q", host, b)
		}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("grpc-closed.extsvc.mesh.local:9000"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("denied gRPC: got %v, want PermissionDenied", err)
	}
}

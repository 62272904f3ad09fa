package xds

import (
	"os"
	"reflect"
	"testing"

	"google.golang.org/protobuf/types/known/anypb"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

func testRoute(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: name, Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}}}
}

// A route table's file is written before the listeners that may name it,
// rewritten alone when only it changes (the revocation path: no LDS
// write, so no listener drain), and removed after the listeners stop.
func TestFileWriterRouteFiles(t *testing.T) {
	tr := newTraced(t)
	cl := []*clusterv3.Cluster{testCluster("a", 1)}
	ls := []*listenerv3.Listener{testListener("la", "a", "a")}
	steps := []struct {
		name string
		res  *Resources
		want []string
	}{
		{"first write: clusters, route table, listeners", &Resources{Clusters: cl, Listeners: ls, Routes: []*routev3.RouteConfiguration{testRoute("ra", "a")}},
			[]string{"write n1/cds.json", "write n1/rds/ra.json", "write n1/lds.json"}},
		{"unchanged: nothing written", &Resources{Clusters: cl, Listeners: ls, Routes: []*routev3.RouteConfiguration{testRoute("ra", "a")}}, nil},
		{"route table changed only: its file only", &Resources{Clusters: cl, Listeners: ls, Routes: []*routev3.RouteConfiguration{testRoute("ra", "b")}},
			[]string{"write n1/rds/ra.json"}},
		{"table gone: listeners first, then its file", &Resources{Clusters: cl, Listeners: []*listenerv3.Listener{testListener("lb", "a", "a")}},
			[]string{"write n1/lds.json", "remove n1/rds/ra.json"}},
	}
	for _, s := range steps {
		if got := tr.write(t, s.res); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("%s: wrote %q, want %q", s.name, got, s.want)
		}
	}
	if _, err := os.Stat(RoutePath(tr.w.Dir, "n1", "ra")); !os.IsNotExist(err) {
		t.Errorf("unused route file still there: %v", err)
	}

	// A new process adopts the route files and removes those not rendered any more.
	dir := tr.w.Dir
	if _, err := tr.w.Write(map[string]*Resources{"n1": {Clusters: cl, Listeners: ls, Routes: []*routev3.RouteConfiguration{testRoute("ra", "a"), testRoute("rb", "a")}}}); err != nil {
		t.Fatal(err)
	}
	w := &FileWriter{Dir: dir}
	if _, err := w.Write(map[string]*Resources{"n1": {Clusters: cl, Listeners: ls, Routes: []*routev3.RouteConfiguration{testRoute("ra", "a")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(RoutePath(dir, "n1", "rb")); !os.IsNotExist(err) {
		t.Errorf("route file of the previous run not removed: %v", err)
	}
	if r := readResponse(t, RoutePath(dir, "n1", "ra")); len(r.Resources) != 1 {
		t.Errorf("route file holds %d tables, want 1", len(r.Resources))
	}
}

func TestSnapshotCarriesRoutes(t *testing.T) {
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{StatPrefix: "a", RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
		RouteConfigName: "ra",
		ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	l := &listenerv3.Listener{Name: "la", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
	}}}}}
	snap, err := Snapshot(&Resources{Listeners: []*listenerv3.Listener{l}, Routes: []*routev3.RouteConfiguration{testRoute("ra", "a")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.GetResources(resourcev3.RouteType); len(got) != 1 || got["ra"] == nil {
		t.Errorf("snapshot routes = %v", got)
	}
}

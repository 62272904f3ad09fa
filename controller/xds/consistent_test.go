package xds

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

func rdsListener(t *testing.T, name string, routes ...string) *listenerv3.Listener {
	t.Helper()
	l := &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", 0)}
	for i, r := range routes {
		hcm, err := anypb.New(&hcmv3.HttpConnectionManager{StatPrefix: r, RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: r,
			ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		fc := &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}}}
		if i == len(routes)-1 && i > 0 {
			l.DefaultFilterChain = fc // the default chain's routes count too
			continue
		}
		l.FilterChains = append(l.FilterChains, fc)
	}
	return l
}

// TestConsistentAgreesWithGoControlPlane: meshext's reference check accepts
// and refuses what go-control-plane's Snapshot.Consistent does (route
// tables named over RDS, in filter chains and the default chain, next to
// tcp_proxy chains), also when the names come from the memo on a second
// round with the same messages.
func TestConsistentAgreesWithGoControlPlane(t *testing.T) {
	routes := func(names ...string) []*routev3.RouteConfiguration {
		var out []*routev3.RouteConfiguration
		for _, n := range names {
			out = append(out, testRoute(n, "a"))
		}
		return out
	}
	two := rdsListener(t, "l", "ra", "rb")
	// l2 names ra as l1 does: remembered by itself, it still names ra.
	l1, l2 := rdsListener(t, "l1", "ra"), rdsListener(t, "l2", "ra")
	cases := []struct {
		name string
		res  *Resources
		want string // "" = consistent
	}{
		{"every named table served", &Resources{Listeners: []*listenerv3.Listener{two, testListener("tcp", "a", "tcp")}, Routes: routes("ra", "rb")}, ""},
		{"no routes at all", &Resources{Listeners: []*listenerv3.Listener{testListener("tcp", "a", "tcp")}}, ""},
		{"a named table missing", &Resources{Listeners: []*listenerv3.Listener{two}, Routes: routes("ra")}, "named by a listener but not served: [rb]"},
		{"a table nobody names", &Resources{Listeners: []*listenerv3.Listener{rdsListener(t, "l1", "ra")}, Routes: routes("ra", "rc")}, "named by no listener: [rc]"},
		{"two listeners name one table", &Resources{Listeners: []*listenerv3.Listener{l1, l2}, Routes: routes("ra")}, ""},
		{"the second one alone", &Resources{Listeners: []*listenerv3.Listener{l2}, Routes: routes("ra")}, ""},
		{"as many, other names", &Resources{Listeners: []*listenerv3.Listener{rdsListener(t, "l1", "ra")}, Routes: routes("rc")}, "not served: [ra]; served but named by no listener: [rc]"},
	}
	var memo rdsMemo
	for round := 0; round < 2; round++ {
		for _, tc := range cases {
			err := consistent(tc.res, &memo)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("round %d, %s: got %v, want %q", round, tc.name, err, tc.want)
			}
			snap, serr := cachev3.NewSnapshot("v", map[string][]types.Resource{
				resourcev3.RouteType: toResources(tc.res.Routes), resourcev3.ListenerType: toResources(tc.res.Listeners),
			})
			if serr != nil {
				t.Fatal(serr)
			}
			if gcp := snap.Consistent(); (gcp == nil) != (err == nil) {
				t.Errorf("round %d, %s: go-control-plane says %v, meshext %v", round, tc.name, gcp, err)
			}
		}
		memo.turn()
		// Round 1 takes every listener's names by identity: its HCMs are
		// not looked up, so only round 0 remembers them.
		if round == 0 && len(memo.names.last) == 0 || len(memo.listeners.last) == 0 {
			t.Errorf("round %d: the memo remembered nothing", round)
		}
		if round == 1 && len(memo.names.last) != 0 {
			t.Errorf("round 1 looked at the HCMs of listeners it had seen")
		}
	}
}

package render

import (
	"testing"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/controller/xds"
	"github.com/meshext/meshext/plugin/egress"
	"github.com/meshext/meshext/plugin/xdsfilter"
)

// contribValidate checks the contrib flavor's config where `envoy --mode
// validate` cannot (the stock binary has no envoy.filters.http.golang): each
// node's bootstrap, read back from its JSON with go-control-plane's contrib
// types registered, passes every PGV rule down through each Any
// (xds.Validate); every HTTP filter chain runs meshext as the golang filter
// on library, never the stock dynamic module; and each plugin_config is a
// filter config the filter loads.
func contribValidate(t *testing.T, out *Output, library string) {
	t.Helper()
	golangFilters := 0
	for _, id := range out.NodeIDs() {
		b, err := StaticBootstrap(out.Nodes[id], BootstrapOptions{})
		if err != nil {
			t.Fatalf("node %s: StaticBootstrap: %v", id, err)
		}
		js, err := CanonicalJSON(b)
		if err != nil {
			t.Fatal(err)
		}
		var back bootstrapv3.Bootstrap
		if err := protojson.Unmarshal(js, &back); err != nil {
			t.Fatalf("node %s: bootstrap JSON does not decode with the contrib types: %v", id, err)
		}
		if err := xds.Validate(&back); err != nil {
			t.Fatalf("node %s: %v", id, err)
		}
		for _, l := range back.GetStaticResources().GetListeners() {
			for _, fc := range l.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					if f.GetName() != "envoy.filters.network.http_connection_manager" {
						continue
					}
					for _, hf := range hcmOf(t, f).GetHttpFilters() {
						switch hf.GetName() {
						case xdsfilter.DynamicModulesFilterName:
							t.Errorf("node %s listener %s: the contrib flavor renders the stock dynamic module", id, l.GetName())
						case xdsfilter.GolangFilterName:
							golangFilters++
							checkGolangFilter(t, l.GetName(), hf, library)
						}
					}
				}
			}
		}
	}
	if golangFilters == 0 {
		t.Fatal("no envoy.filters.http.golang filter rendered")
	}
}

func checkGolangFilter(t *testing.T, listener string, hf *hcmv3.HttpFilter, library string) {
	t.Helper()
	var gc golangv3alpha.Config
	if err := hf.GetTypedConfig().UnmarshalTo(&gc); err != nil {
		t.Fatalf("listener %s: %v", listener, err)
	}
	if gc.GetLibraryId() != egress.FilterName || gc.GetPluginName() != egress.FilterName || gc.GetLibraryPath() != library {
		t.Errorf("listener %s: golang filter library_id %q plugin_name %q library_path %q, want %q %q %q", listener,
			gc.GetLibraryId(), gc.GetPluginName(), gc.GetLibraryPath(), egress.FilterName, egress.FilterName, library)
	}
	var s wrapperspb.StringValue
	if err := gc.GetPluginConfig().UnmarshalTo(&s); err != nil {
		t.Fatalf("listener %s: plugin_config: %v", listener, err)
	}
	if _, err := egress.Parse([]byte(s.GetValue())); err != nil {
		t.Errorf("listener %s: the filter would refuse its plugin_config: %v", listener, err)
	}
}

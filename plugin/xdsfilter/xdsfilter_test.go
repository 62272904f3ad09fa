package xdsfilter

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	dmhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/dynamic_modules/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
	"github.com/meshext/meshext/plugin/envoytest"
)

func cfg() *egress.FilterConfig {
	return &egress.FilterConfig{Config: core.Config{
		Source: core.Identity{Mesh: "default", Service: "web"},
		Services: []core.Service{
			{Name: "open", Mesh: "default", Cluster: "mes_http", Protocol: "http", Port: 80, Hostnames: []string{"open.ext"}},
			{Name: "closed", Mesh: "default", Cluster: "mes_http", Protocol: "http", Port: 80, Hostnames: []string{"closed.ext"}},
		},
		Policies: []core.Policy{{Name: "deny-closed", Mesh: "default", TargetRef: core.TargetRef{Kind: core.KindMeshExternalService, Name: "closed"},
			From: []core.From{{TargetRef: core.TargetRef{Kind: core.KindMesh}, Default: core.Conf{Action: core.Deny}}}}},
	}, TableKey: "xdsfilter-test", IgnoreClientCertificates: true}
}

func TestRenderBothFlavors(t *testing.T) {
	f, err := DynamicModule(cfg())
	if err != nil {
		t.Fatal(err)
	}
	var dm dmhttpv3.DynamicModuleFilter
	if err := f.GetTypedConfig().UnmarshalTo(&dm); err != nil {
		t.Fatal(err)
	}
	if f.GetName() != DynamicModulesFilterName || dm.GetFilterName() != "meshext" || !dm.GetDynamicModuleConfig().GetDoNotClose() {
		t.Fatalf("%v", &dm)
	}
	var sv wrapperspb.StringValue
	if err := dm.GetFilterConfig().UnmarshalTo(&sv); err != nil || !strings.Contains(sv.GetValue(), `"tableKey":"xdsfilter-test"`) {
		t.Fatalf("filter config %q: %v", sv.GetValue(), err)
	}
	if _, err := egress.Parse([]byte(sv.GetValue())); err != nil {
		t.Fatalf("rendered config does not parse back: %v", err)
	}

	g, err := Golang(cfg(), "")
	if err != nil {
		t.Fatal(err)
	}
	var gc golangv3alpha.Config
	if err := g.GetTypedConfig().UnmarshalTo(&gc); err != nil {
		t.Fatal(err)
	}
	if g.GetName() != GolangFilterName || gc.GetLibraryPath() != DefaultGolangLibrary || gc.GetPluginName() != "meshext" || gc.GetLibraryId() != "meshext" {
		t.Fatalf("%v", &gc)
	}

	bad := cfg()
	bad.Services[0].Protocol = "udp"
	if _, err := DynamicModule(bad); err == nil {
		t.Fatal("invalid config rendered")
	}
	if _, err := Golang(bad, ""); err == nil {
		t.Fatal("invalid config rendered")
	}
}

// The rendered stock-Envoy filter, as protojson, works in the real Envoy.
func TestDynamicModuleFilterInEnvoy(t *testing.T) {
	envoyBin := testenv.Envoy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mods := os.Getenv("MESHEXT_MODULE_DIR")
	if mods == "" {
		mods = t.TempDir()
		goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		if _, err := envoytest.BuildModule(ctx, goBin, testenv.RepoRoot(), mods); err != nil {
			t.Fatal(err)
		}
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "upstream") }))
	defer up.Close()
	f, err := DynamicModule(cfg())
	if err != nil {
		t.Fatal(err)
	}
	// filter_config may also be a google.protobuf.Struct (plugin/README.md):
	// Envoy hands the module its JSON.
	var dm dmhttpv3.DynamicModuleFilter
	if err := f.GetTypedConfig().UnmarshalTo(&dm); err != nil {
		t.Fatal(err)
	}
	var sv wrapperspb.StringValue
	if err := dm.GetFilterConfig().UnmarshalTo(&sv); err != nil {
		t.Fatal(err)
	}
	st := &structpb.Struct{}
	if err := protojson.Unmarshal([]byte(sv.GetValue()), st); err != nil {
		t.Fatal(err)
	}
	if dm.FilterConfig, err = anypb.New(st); err != nil {
		t.Fatal(err)
	}
	withStruct := proto.Clone(f).(*hcmv3.HttpFilter)
	if withStruct.ConfigType, err = typedConfig(&dm); err != nil {
		t.Fatal(err)
	}
	for name, filter := range map[string]*hcmv3.HttpFilter{"StringValue": f, "Struct": withStruct} {
		t.Run(name, func(t *testing.T) {
			js, err := protojson.Marshal(filter)
			if err != nil {
				t.Fatal(err)
			}
			var logs strings.Builder
			env, err := envoytest.Start(ctx, t.TempDir(), envoytest.Options{Envoy: envoyBin, ModuleDir: mods, HTTPFilter: js,
				Clusters: []envoytest.Cluster{{Name: "mes_http", Addr: strings.TrimPrefix(up.URL, "http://")}}, Log: &logs})
			if err != nil {
				t.Fatalf("%v\n%s", err, logs.String())
			}
			defer env.Stop()
			for host, want := range map[string]int{"open.ext": 200, "closed.ext": 403, "nope.ext": 404} {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+env.Listener+"/", nil)
				req.Host = host
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("%s: got %d, want %d", host, resp.StatusCode, want)
				}
			}
		})
	}
}

func typedConfig(m proto.Message) (*hcmv3.HttpFilter_TypedConfig, error) {
	a, err := anypb.New(m)
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}, nil
}

// Package xdsfilter renders the meshext HTTP filter entry for an
// HttpConnectionManager as go-control-plane types, for either Envoy flavor
// (--envoy-flavor stock|contrib). The filter's own config is an
// egress.FilterConfig, carried as JSON in a StringValue.
package xdsfilter

import (
	"encoding/json"
	"fmt"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	dmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/dynamic_modules/v3"
	dmhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/dynamic_modules/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshext/meshext/plugin/core"
	"github.com/meshext/meshext/plugin/egress"
)

// HTTP filter names.
const (
	DynamicModulesFilterName = "envoy.filters.http.dynamic_modules"
	GolangFilterName         = "envoy.filters.http.golang"
)

// DefaultGolangLibrary is where Dockerfile.envoy puts libmeshext-golang.so.
const DefaultGolangLibrary = "/usr/local/lib/meshext/libmeshext-golang.so"

// configValue checks cfg compiles (so a bad config fails in the
// controller, not as an Envoy NACK) and wraps its JSON.
func configValue(cfg *egress.FilterConfig) (*anypb.Any, error) {
	if _, err := core.Compile(&cfg.Config); err != nil {
		return nil, err
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return anypb.New(wrapperspb.String(string(b)))
}

// DynamicModule is the stock-Envoy filter: module "meshext" (found as
// ${ENVOY_DYNAMIC_MODULES_SEARCH_PATH}/libmeshext.so), never unloaded.
func DynamicModule(cfg *egress.FilterConfig) (*hcmv3.HttpFilter, error) {
	v, err := configValue(cfg)
	if err != nil {
		return nil, err
	}
	return wrap(DynamicModulesFilterName, &dmhttpv3.DynamicModuleFilter{
		DynamicModuleConfig: &dmv3.DynamicModuleConfig{Name: egress.FilterName, DoNotClose: true},
		FilterName:          egress.FilterName,
		FilterConfig:        v,
	})
}

// Golang is the contrib-Envoy filter; libraryPath "" means DefaultGolangLibrary.
func Golang(cfg *egress.FilterConfig, libraryPath string) (*hcmv3.HttpFilter, error) {
	if libraryPath == "" {
		libraryPath = DefaultGolangLibrary
	}
	v, err := configValue(cfg)
	if err != nil {
		return nil, err
	}
	return wrap(GolangFilterName, &golangv3alpha.Config{
		LibraryId:    egress.FilterName,
		LibraryPath:  libraryPath,
		PluginName:   egress.FilterName,
		PluginConfig: v,
	})
}

// wrap validates m (PGV does not look inside Any) and packs it.
func wrap(name string, m interface {
	proto.Message
	ValidateAll() error
}) (*hcmv3.HttpFilter, error) {
	if err := m.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	a, err := anypb.New(m)
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}, nil
}

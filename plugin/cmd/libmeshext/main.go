//go:build dynmod

// Command libmeshext is the meshext filter as an Envoy dynamic module for
// the stock Envoy binary. Build: make plugin (go build -buildmode=c-shared
// -tags dynmod, with the SDK's abi.h on CGO_CFLAGS). It only registers
// plugin/dynmod with plugin/dynabi, meshext's lean binding of the ABI (in
// place of the SDK's abi package); all logic lives in plain, testable
// packages.
package main

import (
	"github.com/envoyproxy/envoy/source/extensions/dynamic_modules/sdk/go/shared"

	"github.com/meshext/meshext/plugin/cthread"
	"github.com/meshext/meshext/plugin/dynabi" // exports the envoy_dynamic_module_on_* hooks
	"github.com/meshext/meshext/plugin/dynmod"
	"github.com/meshext/meshext/plugin/egress"
)

func init() {
	cthread.SetProcs() // one P per Envoy worker plus one; see plugin/cthread
	dynabi.Register(map[string]shared.HttpFilterConfigFactory{
		egress.FilterName:     dynmod.ConfigFactory{},
		dynmod.NoopFilterName: dynmod.NoopConfigFactory{},
	})
}

func main() {}

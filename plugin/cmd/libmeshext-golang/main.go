//go:build so

// Command libmeshext-golang is the meshext filter for Envoy's contrib Go
// HTTP filter (envoy.filters.http.golang, image envoyproxy/envoy:contrib-*).
// Build: make plugin-golang (go build -buildmode=c-shared -tags so). It only
// registers plugin/contrib with the SDK's cgo http package.
package main

import (
	"github.com/envoyproxy/envoy/contrib/golang/filters/http/source/go/pkg/http"

	"github.com/meshext/meshext/plugin/contrib"
	"github.com/meshext/meshext/plugin/cthread"
	"github.com/meshext/meshext/plugin/egress"
)

func init() {
	cthread.SetProcs() // one P per Envoy worker plus one; see plugin/cthread
	http.RegisterHttpFilterFactoryAndConfigParser(egress.FilterName, contrib.Factory, contrib.Parser{})
}

func main() {}

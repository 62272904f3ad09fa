package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/meshext/meshext/plugin/envoytest"
)

// TestMain makes the meshext dynamic module loadable by every Envoy the
// tests start: `meshext run` and `meshext render` default to --plugin on with
// the stock flavor, so HTTP listeners carry the libmeshext.so filter.
// $MESHEXT_MODULE_DIR names a prebuilt one; otherwise it is built once.
func TestMain(m *testing.M) {
	dir, err := envoytest.TestModule()
	if err != nil {
		fmt.Fprintf(os.Stderr, "meshext tests: no libmeshext.so for Envoy (HTTP listeners will not load): %v\n", err)
	} else {
		for _, kv := range envoytest.ModuleEnv(dir) {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
	}
	code := m.Run()
	envoytest.RemoveTestModule()
	os.Exit(code)
}

package e2e

import (
	"testing"

	"github.com/meshext/meshext/plugin/envoytest"
)

// envoyModuleEnv is the environment a stock Envoy needs to load the meshext
// dynamic module that `meshext run --plugin on` (the default) renders; the
// module is built once per test binary ($MESHEXT_MODULE_DIR names a prebuilt one).
func envoyModuleEnv(t *testing.T) []string {
	t.Helper()
	return envoytest.ModuleEnv(envoytest.TestModuleDir(t))
}

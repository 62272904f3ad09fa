package e2e

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/plugin/envoytest"
)

// libmeshext.so is built once per test binary from this checkout
// ($MESHEXT_MODULE_DIR names a prebuilt one), like the meshext binary.
var module struct {
	once sync.Once
	dir  string
	err  error
}

// envoyModuleEnv is the environment a stock Envoy needs to load the meshext
// dynamic module that `meshext run --plugin on` (the default) renders.
func envoyModuleEnv(t *testing.T) []string {
	t.Helper()
	module.once.Do(func() {
		if d := os.Getenv("MESHEXT_MODULE_DIR"); d != "" {
			module.dir = d
			return
		}
		module.dir, module.err = os.MkdirTemp("", "meshext-e2e-module")
		if module.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		_, module.err = envoytest.BuildModule(ctx, goBin, testenv.RepoRoot(), module.dir)
	})
	if module.err != nil {
		t.Fatal(module.err)
	}
	return []string{"ENVOY_DYNAMIC_MODULES_SEARCH_PATH=" + module.dir, "GODEBUG=cgocheck=0"}
}

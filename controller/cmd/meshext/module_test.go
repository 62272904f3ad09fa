package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
	"github.com/meshext/meshext/plugin/envoytest"
)

// TestMain makes the meshext dynamic module loadable by every Envoy the
// tests start: `meshext run` and `meshext render` default to --plugin on with
// the stock flavor, so HTTP listeners carry the libmeshext.so filter.
// $MESHEXT_MODULE_DIR names a prebuilt one; otherwise it is built once.
func TestMain(m *testing.M) {
	dir, cleanup, err := moduleForEnvoy()
	if err != nil {
		fmt.Fprintf(os.Stderr, "meshext tests: no libmeshext.so for Envoy (HTTP listeners will not load): %v\n", err)
	} else {
		os.Setenv("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir)
		os.Setenv("GODEBUG", "cgocheck=0")
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func moduleForEnvoy() (string, func(), error) {
	if d := os.Getenv("MESHEXT_MODULE_DIR"); d != "" {
		return d, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "meshext-cmd-module-")
	if err != nil {
		return "", func() {}, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	if _, err := envoytest.BuildModule(ctx, goBin, testenv.RepoRoot(), dir); err != nil {
		return "", cleanup, err
	}
	return dir, cleanup, nil
}

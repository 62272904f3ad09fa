package envoytest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshext/meshext/e2e/testenv"
)

// testModule is libmeshext.so built once per test binary.
var testModule struct {
	once  sync.Once
	dir   string
	built bool // dir is ours to remove
	err   error
}

// TestModule returns a directory holding libmeshext.so built from this
// checkout, once per process; $MESHEXT_MODULE_DIR names a prebuilt one.
func TestModule() (string, error) {
	testModule.once.Do(func() {
		if d := os.Getenv("MESHEXT_MODULE_DIR"); d != "" {
			testModule.dir = d
			return
		}
		dir, err := os.MkdirTemp("", "meshext-module-")
		if err != nil {
			testModule.err = err
			return
		}
		testModule.dir, testModule.built = dir, true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		_, testModule.err = BuildModule(ctx, goBin, testenv.RepoRoot(), dir)
	})
	return testModule.dir, testModule.err
}

// TestModuleDir is TestModule for a test: a failed build fails it.
func TestModuleDir(t testing.TB) string {
	t.Helper()
	dir, err := TestModule()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// RemoveTestModule deletes the directory TestModule built (never
// $MESHEXT_MODULE_DIR); call it from TestMain after m.Run.
func RemoveTestModule() {
	if testModule.built {
		os.RemoveAll(testModule.dir)
	}
}

// ModuleEnv is the environment a stock Envoy needs to load the meshext
// dynamic module from dir (a Go runtime in Envoy needs cgocheck off).
func ModuleEnv(dir string) []string {
	return []string{"ENVOY_DYNAMIC_MODULES_SEARCH_PATH=" + dir, "GODEBUG=cgocheck=0"}
}

// WaitForFile polls (bounded: 10 s) until path contains every one of wants and returns
// its text; Envoy flushes access logs asynchronously.
func WaitForFile(t testing.TB, path string, wants ...string) string {
	t.Helper()
	var last string
	for i := 0; i < 100; i++ {
		b, _ := os.ReadFile(path)
		last = string(b)
		if containsAll(last, wants) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never contained all of %q:\n%s", path, wants, last)
	return ""
}

func containsAll(s string, wants []string) bool {
	for _, w := range wants {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}
